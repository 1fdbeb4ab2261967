"""The dead letters as the console shows them: a bounded, tenant-scoped view of the dead-letter
topic (``view``) and the API process's lazy reader that feeds it (``reader``)."""
