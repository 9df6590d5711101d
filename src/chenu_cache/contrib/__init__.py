"""Optional integrations; each needs its extra (``pip install "chenu-cache[fastapi]"``)."""
