"""The console's own strings (layout, navigation, sign-in, errors): key -> (Dutch, English)."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "app.name": ("cityhub-console", "cityhub console"),
    "layout.skip": ("Naar de inhoud", "Skip to content"),
    "layout.nav": ("Hoofdmenu", "Main menu"),
    "layout.language": ("Taal", "Language"),
    "layout.signed_in_as": (
        "Aangemeld met sleutel {key} ({role}) bij {tenant}",
        "Signed in with key {key} ({role}) in {tenant}",
    ),
    "layout.sign_out": ("Afmelden", "Sign out"),
    "layout.tenant": ("Tenant", "Tenant"),
    "layout.tenant_choose": ("Wissel", "Switch"),
    "layout.assets_missing": (
        "De scripts van de console (htmx, Leaflet) zijn niet gebouwd: voer `make console-assets` "
        "uit. Pagina's werken zonder, maar de kaart en live-updates niet.",
        "The console's scripts (htmx, Leaflet) were not built: run `make console-assets`. Pages "
        "work without them, but the map and live updates do not.",
    ),
    "lang.nl": ("Nederlands", "Nederlands"),
    "lang.en": ("English", "English"),
    "nav.devices": ("Apparaten", "Devices"),
    "nav.map": ("Kaart", "Map"),
    "signin.title": ("Aanmelden", "Sign in"),
    "signin.intro": (
        "Meld u aan met een API-sleutel van cityhub. De sleutel wordt alleen versleuteld in een "
        "cookie bewaard, nooit in een adres of op een pagina.",
        "Sign in with a cityhub API key. The key is kept only encrypted in a cookie, never in an "
        "address or on a page.",
    ),
    "signin.key": ("API-sleutel", "API key"),
    "signin.key_hint": ("Begint met chk_", "Starts with chk_"),
    "signin.submit": ("Aanmelden", "Sign in"),
    "signin.failed": (
        "Aanmelden mislukt: deze sleutel is onbekend of ingetrokken.",
        "Sign-in failed: this key is unknown or revoked.",
    ),
    "signin.signed_out": ("U bent afgemeld.", "You are signed out."),
    "signin.signed_out_unrecorded": (
        "U bent afgemeld in deze browser, maar de server kon de afmelding niet vastleggen: een "
        "kopie van de cookie van deze sessie (op een andere computer, in het log van een proxy) "
        "blijft geldig tot de sessie verloopt. Kan iemand zo'n kopie hebben, laat dan uw "
        "API-sleutel intrekken.",
        "You are signed out in this browser, but the server could not record the sign-out: a "
        "copy of this session's cookie (on another computer, in a proxy's log) stays valid "
        "until the session expires. If someone may have such a copy, have your API key revoked.",
    ),
    "signin.signed_out_unrecorded_oidc": (
        "U bent afgemeld in deze browser, maar de server kon de afmelding niet vastleggen: een "
        "kopie van de cookie van deze sessie (op een andere computer, in het log van een proxy) "
        "blijft geldig tot de sessie verloopt. Kan iemand zo'n kopie hebben, meld het dan aan "
        "een beheerder: het uitschakelen van aanmelden met OpenID Connect beëindigt zulke "
        "sessies.",
        "You are signed out in this browser, but the server could not record the sign-out: a "
        "copy of this session's cookie (on another computer, in a proxy's log) stays valid "
        "until the session expires. If someone may have such a copy, tell an administrator: "
        "switching OpenID Connect sign-in off ends such sessions.",
    ),
    "signin.expired": (
        "Uw sessie is verlopen; meld u opnieuw aan.",
        "Your session has expired; please sign in again.",
    ),
    "signin.oidc_intro": (
        "Operators van de gemeente kunnen ook aanmelden met hun gemeente-account.",
        "The municipality's operators can also sign in with their municipal account.",
    ),
    "signin.oidc": ("Aanmelden met gemeente-account", "Sign in with municipal account"),
    "signin.oidc_failed": (
        "Aanmelden met het gemeente-account is niet gelukt, of dit account is geen operator.",
        "Signing in with the municipal account failed, or the account is not an operator.",
    ),
    "error.title": ("Er ging iets mis", "Something went wrong"),
    "error.404": ("Niet gevonden.", "Not found."),
    "error.403": ("Dit mag deze sleutel niet.", "This key may not do that."),
    "error.role_page": (
        "Deze pagina is er voor sleutels met de rol {roles}; deze sleutel heeft een andere rol.",
        "This page is for keys with the role {roles}; this key has another role.",
    ),
    "error.400": ("Het verzoek klopt niet.", "The request is not valid."),
    "error.csrf": (
        "Het formulier was verlopen of kwam niet van deze console; probeer het opnieuw.",
        "The form had expired or did not come from this console; please try again.",
    ),
    "error.back": ("Terug naar de apparaten", "Back to the devices"),
    "error.503": ("Dit is nu niet beschikbaar.", "This is not available right now."),
    "error.signouts_unready": (
        "De console kan uw sessie nu niet controleren (hij start nog, of bereikt Kafka niet); "
        "probeer het over een paar seconden opnieuw.",
        "The console cannot check your session right now (it is still starting, or cannot reach "
        "Kafka); please try again in a few seconds.",
    ),
    "common.yes": ("ja", "yes"),
    "common.no": ("nee", "no"),
    "common.none": ("—", "—"),
    "common.any": ("alle", "any"),
    "common.save": ("Opslaan", "Save"),
    "common.search": ("Zoeken", "Search"),
    "common.next": ("Volgende", "Next"),
    "common.errors": (
        "Niet opgeslagen: herstel de gemarkeerde velden.",
        "Not saved: correct the marked fields.",
    ),
    "common.saved": ("Opgeslagen.", "Saved."),
}
