"""Deprecated import path, kept for one release: `mwnet_tf.optim` is now
`mwnet_tf.methods.optim`.

Importing it warns (DeprecationWarning) and gives the very module, `mwnet_tf.methods.optim`.
"""

import sys
import warnings

from mwnet_tf.methods import optim as _module

warnings.warn("mwnet_tf.optim is deprecated; import mwnet_tf.methods.optim",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _module
