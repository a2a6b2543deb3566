"""What `dpcnn eval` writes besides metrics.json: metrics.md (:mod:`.markdown`) and the pictures (:mod:`.figures`)."""
