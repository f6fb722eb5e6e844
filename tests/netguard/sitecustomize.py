"""Loaded by every Python process of the test run (``PYTHONPATH``): installs the network guard."""

import os

if os.environ.get("TOOLKIT_BLOCK_NETWORK") == "1":
    import netguard

    netguard.install()
