"""Deprecated import path, kept for one release: `mwnet_tf.export` is now
`mwnet_tf.models.weight_function`.

Importing it warns (DeprecationWarning) and gives the very module,
`mwnet_tf.models.weight_function`.
"""

import sys
import warnings

from mwnet_tf.models import weight_function as _module

warnings.warn("mwnet_tf.export is deprecated; import mwnet_tf.models.weight_function",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _module
