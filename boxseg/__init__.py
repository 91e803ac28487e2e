"""boxseg: weakly supervised 3D lesion segmentation from bounding boxes.

Array axis order everywhere in this package is numpy's (z, y, x); SimpleITK
images keep their own (x, y, z) order and are converted at the I/O boundary.
"""

__version__ = "0.1.0"
