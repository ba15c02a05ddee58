"""Deprecated import path, kept for one release: `mwnet_tf.steps` is now
`mwnet_tf.methods.steps`.

Importing it warns (DeprecationWarning) and gives the very module, `mwnet_tf.methods.steps`.
"""

import sys
import warnings

from mwnet_tf.methods import steps as _module

warnings.warn("mwnet_tf.steps is deprecated; import mwnet_tf.methods.steps",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _module
