"""Strings of the subscriptions, dead-letter and import pages: key -> (Dutch, English)."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "nav.subscriptions": ("Abonnementen", "Subscriptions"),
    "nav.deadletters": ("Afgewezen berichten", "Dead letters"),
    "nav.imports": ("Importeren", "Imports"),
    # --- subscriptions ---------------------------------------------------------------------
    "subs.title": ("Abonnementen", "Subscriptions"),
    "subs.intro_own": (
        "De abonnementen van tenant {tenant}, met hun levering zoals het leveringsproces die "
        "het laatst meldde.",
        "Tenant {tenant}'s subscriptions, with their delivery as the delivery process last "
        "reported it.",
    ),
    "subs.intro_all": (
        "De abonnementen van alle tenants, met hun levering zoals het leveringsproces die het "
        "laatst meldde.",
        "Every tenant's subscriptions, with their delivery as the delivery process last "
        "reported it.",
    ),
    "subs.caption": ("{n} abonnementen", "{n} subscriptions"),
    "subs.none": ("Geen abonnementen.", "No subscriptions."),
    "subs.tenant": ("Tenant", "Tenant"),
    "subs.id": ("Id", "Id"),
    "subs.name": ("Naam", "Name"),
    "subs.kind": ("Levering", "Delivery"),
    "subs.state": ("Toestand", "State"),
    "subs.lag": ("Achterstand", "Lag"),
    "subs.lag_value": ("{messages} berichten, {seconds} s", "{messages} messages, {seconds} s"),
    "subs.rate": ("Geleverd per seconde", "Delivered per second"),
    "subs.delivered": ("Geleverd", "Delivered"),
    "subs.failures": ("Mislukt", "Failures"),
    "subs.failures_value": (
        "{failed} pogingen, {dead} afgewezen, {dropped} weggegooid",
        "{failed} attempts, {dead} dead-lettered, {dropped} dropped",
    ),
    "subs.as_of": ("Gemeten", "Measured"),
    "subs.as_of_value": ("{age} s geleden", "{age} s ago"),
    "subs.no_status": (
        "nog geen melding van een leveringsproces",
        "no delivery process has reported it yet",
    ),
    "subs.by_client": (
        "geleverd door de eigen lezer van de abonnee (Kafka-topic of live-stroom)",
        "delivered by the subscriber's own reader (Kafka topic or live stream)",
    ),
    "subs.status_unavailable": (
        "De leveringsstatus is in dit proces niet beschikbaar.",
        "The delivery status is not available in this process.",
    ),
    "subs.cut": (
        "Hier staan de eerste 1 000 abonnementen; de API geeft de rest per tenant "
        "(GET /api/v1/tenants/{tenant}/subscriptions).",
        "Shown: the first 1,000 subscriptions; the API lists the rest per tenant "
        "(GET /api/v1/tenants/{tenant}/subscriptions).",
    ),
    "subs.actions": ("Acties", "Actions"),
    "subs.pause": ("Pauzeer", "Pause"),
    "subs.resume": ("Hervat", "Resume"),
    "subs.replay": ("Opnieuw leveren", "Replay"),
    "subs.replay_from_time": ("Vanaf tijd (RFC 3339)", "From time (RFC 3339)"),
    "subs.replay_from_offset": ("Of vanaf offset", "Or from offset"),
    "subs.replay_hint": (
        "Geef één van beide, bv. 2026-12-04T08:00:00Z of 0.",
        "Give one of them, e.g. 2026-12-04T08:00:00Z or 0.",
    ),
    "subs.paused_done": ("Abonnement {id} is gepauzeerd.", "Subscription {id} is paused."),
    "subs.resumed_done": ("Abonnement {id} is hervat.", "Subscription {id} is resumed."),
    "subs.replay_done": (
        "Abonnement {id} levert opnieuw vanaf het gevraagde punt.",
        "Subscription {id} is delivering again from the point asked for.",
    ),
    "subs.not_allowed": (
        "Abonnementen zijn er voor abonnee- en beheerderssleutels; deze sleutel heeft er geen.",
        "Subscriptions belong to subscriber and admin keys; this key has none.",
    ),
    "state.active": ("actief", "active"),
    "state.paused": ("gepauzeerd", "paused"),
    "state.failing": ("faalt", "failing"),
    # --- dead letters ----------------------------------------------------------------------
    "dl.title": ("Afgewezen berichten", "Dead letters"),
    "dl.intro_operator": (
        "De laatste afgewezen berichten van de apparaten van tenant {tenant}.",
        "The latest dead letters of tenant {tenant}'s devices.",
    ),
    "dl.intro_admin": (
        "De laatste afgewezen berichten van alle tenants, ook van onbekende apparaten.",
        "The latest dead letters of every tenant, unknown devices included.",
    ),
    "dl.bounds": (
        "Per tenant de laatste {n}; van elk bericht de eerste {bytes} bytes van de inhoud.",
        "The last {n} per tenant; of each, the first {bytes} bytes of its payload.",
    ),
    "dl.loading": (
        "De berichten worden nog gelezen; vernieuw de pagina zo.",
        "The dead letters are still being read; refresh the page in a moment.",
    ),
    "dl.failed": (
        "De afgewezen berichten konden niet gelezen worden: {why}",
        "The dead letters could not be read: {why}",
    ),
    "dl.unavailable": (
        "Afgewezen berichten zijn in dit proces niet beschikbaar.",
        "Dead letters are not available in this process.",
    ),
    "dl.reasons": ("Per reden", "By reason"),
    "dl.all_reasons": ("alle redenen", "every reason"),
    "dl.reason": ("Reden", "Reason"),
    "dl.stage": ("Stap", "Stage"),
    "dl.time": ("Tijd", "Time"),
    "dl.device": ("Apparaat", "Device"),
    "dl.tenant": ("Tenant", "Tenant"),
    "dl.unknown_device": ("onbekend apparaat", "unknown device"),
    "dl.shared_device": (
        "apparaat van een andere tenant, gedeeld via een afspraak",
        "another tenant's device, shared under an agreement",
    ),
    "dl.payload_shared": (
        "Inhoud niet getoond: de gegevens zijn van een andere tenant, gedeeld via een afspraak; "
        "het abonnement leest ze opnieuw zolang de afspraak geldt (opnieuw afspelen vanaf de "
        "offset hierboven).",
        "Payload withheld: the data are another tenant's, shared under an agreement; the "
        "subscription reads them again while the agreement lasts (replay from the offset "
        "above).",
    ),
    "dl.detail": ("Toelichting", "Detail"),
    "dl.caption": ("{n} afgewezen berichten", "{n} dead letters"),
    "dl.none": ("Geen afgewezen berichten.", "No dead letters."),
    "dl.open": ("Bekijk", "Open"),
    "dl.letter_title": ("Afgewezen bericht {id}", "Dead letter {id}"),
    "dl.source": ("Herkomst", "Source"),
    "dl.format": ("Formaat", "Format"),
    "dl.kafka_topic": ("Kafka-topic", "Kafka topic"),
    "dl.target_topic": ("Doeltopic", "Target topic"),
    "dl.subscription": ("Abonnement", "Subscription"),
    "dl.position": ("Positie", "Position"),
    "dl.position_value": (
        "partitie {partition}, offset {offset}",
        "partition {partition}, offset {offset}",
    ),
    "dl.size": ("Grootte", "Size"),
    "dl.size_value": ("{n} bytes", "{n} bytes"),
    "dl.payload": ("Oorspronkelijke inhoud", "Original payload"),
    "dl.payload_text": (
        "Als tekst (nooit als HTML getoond).",
        "As text (never shown as HTML).",
    ),
    "dl.payload_hex": (
        "Als hexadecimale bytes: de inhoud is geen leesbare tekst.",
        "As hexadecimal bytes: the payload is not readable text.",
    ),
    "dl.payload_cut": (
        "Ingekort: de eerste {shown} van {size} bytes.",
        "Cut: the first {shown} of {size} bytes.",
    ),
    "dl.payload_empty": ("Geen inhoud.", "No payload."),
    "dl.payload_personal": (
        "Dit apparaat is van een persoonlijk type: de inhoud kan persoonsgegevens bevatten.",
        "This device is of a personal type: its payload may hold personal data.",
    ),
    "dl.payload_withheld": (
        "Inhoud niet getoond: geen vastgelegd doel dekt het inzien van persoonsgegevens in een "
        "afgewezen bericht. Reden, details, grootte en sha256 staan hierboven.",
        "Payload withheld: no declared purpose covers reading personal data in a dead letter. "
        "The reason, detail, size and sha256 are above.",
    ),
    "dl.back": ("Terug naar de afgewezen berichten", "Back to the dead letters"),
    # --- imports ---------------------------------------------------------------------------
    "imp.title": ("Apparaten importeren", "Import devices"),
    "imp.intro": (
        "Een CSV-bestand (kolommen van The Things Stack en van cityhub) of een JSON-lijst. Goede "
        "rijen worden aangemaakt of bijgewerkt; van elke foute rij ziet u de regel en de reden.",
        "A CSV file (The Things Stack's columns and cityhub's) or a JSON array. Good rows are "
        "created or updated; for each bad row you see its line and the reason.",
    ),
    "imp.file": ("Bestand", "File"),
    "imp.file_hint": (
        "CSV of JSON, hoogstens {bytes} bytes.",
        "CSV or JSON, at most {bytes} bytes.",
    ),
    "imp.default_type": ("Type voor rijen zonder type", "Type of rows that name none"),
    "imp.start": ("Importeer", "Import"),
    "imp.no_file": ("Kies een bestand.", "Choose a file."),
    "imp.bad_kind": (
        "Alleen CSV- (.csv) en JSON-bestanden (.json).",
        "Only CSV (.csv) and JSON (.json) files.",
    ),
    "imp.too_large": (
        "Het bestand is groter dan {bytes} bytes; splits het.",
        "The file is larger than {bytes} bytes; split it.",
    ),
    "imp.refused": ("Het bestand is niet gelezen: {why}", "The file was not read: {why}"),
    "imp.unavailable": (
        "Importeren is in dit proces niet beschikbaar.",
        "Imports are not available in this process.",
    ),
    "imp.recent": ("Recente imports", "Recent imports"),
    "imp.none": ("Nog geen imports.", "No imports yet."),
    "imp.job_title": ("Import van {file}", "Import of {file}"),
    "imp.progress": ("Voortgang", "Progress"),
    "imp.progress_value": ("{done} van {total} rijen", "{done} of {total} rows"),
    "import_state.queued": ("wacht", "waiting"),
    "import_state.running": ("bezig", "running"),
    "import_state.done": ("klaar", "done"),
    "import_state.failed": ("mislukt", "failed"),
    "imp.summary": (
        "{created} aangemaakt, {updated} bijgewerkt, {failed} fout",
        "{created} created, {updated} updated, {failed} failed",
    ),
    "imp.report": ("Rapport per rij", "Report per row"),
    "imp.bad_rows": ("Foute rijen", "Bad rows"),
    "imp.no_bad_rows": ("Geen foute rijen.", "No bad rows."),
    "imp.good_rows": ("Goede rijen", "Good rows"),
    "imp.row": ("Rij", "Row"),
    "imp.line": ("Regel", "Line"),
    "imp.id": ("Id", "Id"),
    "imp.status": ("Uitkomst", "Outcome"),
    "imp.reasons": ("Redenen", "Reasons"),
    "import_row.created": ("aangemaakt", "created"),
    "import_row.updated": ("bijgewerkt", "updated"),
    "import_row.error": ("fout", "error"),
    "imp.ignored_columns": ("Genegeerde kolommen: {columns}", "Columns ignored: {columns}"),
    "imp.refresh": ("Vernieuw", "Refresh"),
    "imp.rows_cut": (
        "Hier staan de eerste 2 000 foute en 1 000 goede rijen; de tellingen hierboven zijn "
        "volledig.",
        "Shown: the first 2,000 bad and 1,000 good rows; the counts above are complete.",
    ),
    "imp.another": ("Nog een bestand importeren", "Import another file"),
}
