# Importing the package registers every merge method: the 2024–2025 ones live in `modern` (nbs/04d_merge.modern.ipynb).
from . import modern as _modern
