"""The app for faust's own command line: ``faust -A cityhub.streams.faust_app worker``.

The only module that builds an app at import time; nothing else imports it. The registry store
is started and stopped with the app.
"""

from cityhub.schemas.settings import Settings
from cityhub.streams.app import create_app
from cityhub.streams.registry.store import RegistryStore
from cityhub.streams.services import RegistryStoreService

settings = Settings()
registry = RegistryStore(settings)
app = create_app(settings, registry)
app.add_dependency(RegistryStoreService(registry))
