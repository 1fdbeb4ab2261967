"""The app for faust's own command line: ``faust -A cityhub.streams.faust_app worker``.

The only module that builds an app at import time; nothing else imports it.
"""

from cityhub.schemas.settings import Settings
from cityhub.streams.app import create_app

app = create_app(Settings())
