"""The training steps `mwnet_tf.bench` compares, by name (no TensorFlow: the command checks
its flags against these names before importing anything heavy)."""

from __future__ import annotations

# name -> (method, its hyperparameters): the steps compared, built through `mwnet_tf.methods`
# exactly as the trainer builds them. mwnet_interval's K (None here) is --meta_interval.
VARIANTS = {"ce": ("ce", {}), "mwnet": ("mwnet", {}),
            "mwnet_head": ("mwnet", {"meta_scope": "head"}),
            "mwnet_last": ("mwnet", {"meta_scope": "last"}),
            "mwnet_sampled": ("mwnet", {"meta_scope": "sampled"}),
            "mwnet_interval": ("mwnet", {"meta_interval": None}),
            "mwnet_head_interval": ("mwnet", {"meta_scope": "head", "meta_interval": None}),
            "l2rw": ("l2rw", {})}
LABELS = {"ce": "plain (cross-entropy)", "mwnet": "MW-Net, exact",
          "mwnet_head": "MW-Net, --meta_scope=head",
          "mwnet_last": "MW-Net, --meta_scope=last (15 variables)",
          "mwnet_sampled": "MW-Net, --meta_scope=sampled (FaMUS, 15 candidates)",
          "mwnet_interval": "MW-Net, --meta_interval",
          "mwnet_head_interval": "MW-Net, --meta_scope=head --meta_interval",
          "l2rw": "L2RW"}


def interval(variant: str) -> bool:
    """Whether the variant takes the bench's --meta_interval."""
    return "meta_interval" in VARIANTS[variant][1]
