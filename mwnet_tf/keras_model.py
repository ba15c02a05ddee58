"""Deprecated import path, kept for one release: `mwnet_tf.keras_model` is now
`mwnet_tf.methods.keras_model`.

Importing it warns (DeprecationWarning) and gives the very module, `mwnet_tf.methods.keras_model`.
"""

import sys
import warnings

from mwnet_tf.methods import keras_model as _module

warnings.warn("mwnet_tf.keras_model is deprecated; import mwnet_tf.methods.keras_model",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _module
