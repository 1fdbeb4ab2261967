"""Egress: what delivers to subscribers (webhooks, MQTT republish) and its pure parts: Standard
Webhooks signing, SSRF checks of webhook URLs, the retry schedule."""
