"""Strings of the device pages (list, map, device page, its edit form): key -> (Dutch, English)."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "devices.title": ("Apparaten", "Devices"),
    "devices.search": ("Zoek op id of naam", "Search by id or name"),
    "devices.type": ("Type", "Type"),
    "devices.area": ("Gebied", "Area"),
    "devices.tag": ("Label", "Tag"),
    "devices.tags": ("Labels", "Tags"),
    "devices.active": ("Actief", "Active"),
    "devices.health": ("Gezondheid", "Health"),
    "devices.id": ("Id", "Id"),
    "devices.name": ("Naam", "Name"),
    "devices.shown": ("{n} apparaten getoond", "{n} devices shown"),
    "devices.none": ("Geen apparaten gevonden.", "No devices found."),
    "health.ok": ("in orde", "ok"),
    "health.degraded": ("verminderd", "degraded"),
    "health.silent": ("stil", "silent"),
    "health.unknown": ("onbekend", "unknown"),
    "health.never_seen": ("nooit gezien", "never seen"),
    "health.readings_24h": ("Metingen (24 uur)", "Readings (24 hours)"),
    "health.flags_24h": ("Kwaliteitsvlaggen (24 uur)", "Quality flags (24 hours)"),
    "health.battery": ("Batterij", "Battery"),
    "health.rssi": ("Signaalsterkte (RSSI)", "Signal strength (RSSI)"),
    "health.snr": ("Signaal-ruisverhouding (SNR)", "Signal-to-noise ratio (SNR)"),
    "health.dead_letter": ("Afgewezen (24 uur)", "Dead letters (24 hours)"),
    "health.last_seen": ("Laatst gezien", "Last seen"),
}

MESSAGES.update(
    {
        "device.back": ("← Alle apparaten", "← All devices"),
        "device.health": ("Gezondheid", "Health"),
        "health.silent_since": ("Stil sinds", "Silent since"),
        "health.expected_interval": ("Verwacht interval", "Expected interval"),
        "health.seconds": ("{n} s", "{n} s"),
        "health.flagged_share": ("Aandeel gemarkeerde metingen", "Share of flagged readings"),
        "health.unknown_hint": (
            "Van dit apparaat is nog geen gezondheid bekend.",
            "No health is known for this device yet.",
        ),
        "device.live": ("Live metingen", "Live observations"),
        "device.live_waiting": ("Verbinden…", "Connecting…"),
        "device.live_connected": (
            "Verbonden: nieuwe metingen verschijnen hier.",
            "Connected: new observations appear here.",
        ),
        "device.live_closed": ("De live-verbinding is gesloten.", "The live connection closed."),
        "device.live_ended": (
            "Live weergave beëindigd: u bent afgemeld, of mag dit apparaat niet meer zien. "
            "Laad de pagina opnieuw.",
            "Live view ended: you are signed out, or may no longer see this device. "
            "Reload the page.",
        ),
        "device.live_unchecked": (
            "Live weergave gestopt: de server kan uw sessie nu niet controleren (Kafka is "
            "onbereikbaar). Laad de pagina over een ogenblik opnieuw.",
            "Live view stopped: the server cannot check your session right now (Kafka is "
            "unreachable). Reload the page in a moment.",
        ),
        "device.live_none_yet": ("Nog geen nieuwe metingen.", "No new observations yet."),
        "device.live_unavailable": (
            "Live metingen worden door dit proces niet geserveerd.",
            "Live observations are not served by this process.",
        ),
        "device.live_refused": (
            "Te veel live-weergaven tegelijk; sluit er een en probeer het opnieuw.",
            "Too many live views at once; close one and try again.",
        ),
        "device.live_dropped": (
            "{n} metingen overgeslagen (de pagina liep achter).",
            "{n} observations skipped (the page fell behind).",
        ),
        "device.value_withheld": ("persoonlijke waarde niet getoond", "personal value withheld"),
        "device.flags": ("kwaliteit: {flags}", "quality: {flags}"),
        "device.chart": ("Recente vensters", "Recent windows"),
        "device.quantity": ("Grootheid", "Quantity"),
        "device.period": ("Periode", "Period"),
        "device.hours": ("laatste {n} uur", "last {n} hours"),
        "device.show": ("Toon", "Show"),
        "device.chart_title": (
            "Gemiddelde per venster van {quantity} ({unit})",
            "Mean per window of {quantity} ({unit})",
        ),
        "device.chart_desc": (
            "{n} vensters; waarden tussen {low} en {high}. De tabel hieronder geeft elk venster.",
            "{n} windows; values between {low} and {high}. The table below lists each window.",
        ),
        "device.chart_table": ("Tabel van de vensters", "Table of the windows"),
        "device.chart_none": (
            "Geen vensters in deze periode.",
            "No windows in this period.",
        ),
        "device.chart_unavailable": (
            "De vensters kunnen nu niet gelezen worden.",
            "The windows cannot be read now.",
        ),
        "device.chart_personal": (
            "Persoonlijke vensters worden hier niet getoond.",
            "Personal windows are not shown here.",
        ),
        "device.window_end": ("Einde venster", "Window end"),
        "device.flagged": ("Gemarkeerd / metingen", "Flagged / readings"),
        "device.coverage": ("Dekking", "Coverage"),
        "device.chart_flagged": (
            "Een groot open rondje is een venster met gemarkeerde metingen (zie de tabel).",
            "A large hollow circle is a window with flagged readings (see the table).",
        ),
        "device.mean": ("Gemiddelde", "Mean"),
        "device.min": ("Min", "Min"),
        "device.max": ("Max", "Max"),
        "device.count": ("Aantal", "Count"),
        "device.registration": ("Registratie", "Registration"),
        "device.tags_hint": ("Gescheiden door komma's", "Separated by commas"),
        "device.dev_eui": ("DevEUI", "DevEUI"),
        "device.dev_eui_hint": (
            "16 hexadecimale cijfers; leeg voor een MQTT-sensor",
            "16 hex digits; empty for an MQTT sensor",
        ),
        "device.latitude": ("Breedtegraad", "Latitude"),
        "device.longitude": ("Lengtegraad", "Longitude"),
        "device.not_a_number": ("Geen getal", "Not a number"),
        "device.app_key": ("AppKey ingesteld", "AppKey set"),
        "device.network": ("Netwerk", "Network"),
        "device.updated": ("Gewijzigd", "Updated"),
    }
)

MESSAGES.update(
    {
        "map.title": ("Kaart van de apparaten", "Map of the devices"),
        "map.legend": ("Legenda", "Legend"),
        "map.region": ("Kaart", "Map"),
        "map.marker": ("{name}: {health}", "{name}: {health}"),
        "map.more": (
            "Alleen de eerste {n} apparaten met een locatie worden getoond.",
            "Only the first {n} devices with a location are shown.",
        ),
        "map.no_tiles": (
            "Geen kaartachtergrond ingesteld: de apparaten staan op een effen vlak.",
            "No map tiles configured: the devices are shown on a plain background.",
        ),
        "map.table": ("{n} apparaten met een locatie", "{n} devices with a location"),
        "map.none": ("Geen apparaten met een locatie.", "No devices with a location."),
    }
)
