"""Write scikit-image's bundled photographs as PNG folders, to try every command without
any data of your own (or ``../shared``)::

    python scripts/sample_images.py samples

makes ``samples/gray/{train,test}`` and ``samples/color/{train,test}``: a handful of
real photographs each (textures, text, faces, objects), enough for a short
``filterscope train`` or ``experiment --quick`` run and for ``denoise``/``analyze``.
They ship with scikit-image, a dependency of filterscope: nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

# folder -> bundled image names (all 8-bit; gray ones 2-D, color ones RGB)
SETS = {
    "gray/train": ["brick", "camera", "coins", "grass", "gravel", "page"],
    "gray/test": ["clock", "moon", "text"],
    "color/train": ["astronaut", "coffee", "immunohistochemistry", "rocket"],
    "color/test": ["chelsea", "colorwheel"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to create (must not exist yet)")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        parser.error(f"{out}: already exists")
    for folder, names in SETS.items():
        (out / folder).mkdir(parents=True)
        for name in names:
            image = np.asarray(getattr(data, name)())
            Image.fromarray(image).save(out / folder / f"{name}.png")
    total = sum(len(names) for names in SETS.values())
    print(f"wrote {total} images into {out}/{{gray,color}}/{{train,test}}")


if __name__ == "__main__":
    main()
