"""Write the split manifests of the bundled datasets to ``datasets/manifests`` (``make manifests``).

Run this only when a split is meant to change, and say why in the commit: the tests compare every
DataModule's default split with these files.
"""

import json
from pathlib import Path

from toolkit.data import BreastCancerDataModule, DigitsDataModule, MNIST1DDataModule, MoonsDataModule

OUT = Path(__file__).parents[1] / "datasets" / "manifests"

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for module in (DigitsDataModule(), BreastCancerDataModule(), MoonsDataModule(), MNIST1DDataModule()):
        path = OUT / f"{module.name}.json"
        path.write_text(json.dumps(module.manifest(), indent=1) + "\n")
        print(f"wrote {path}")
