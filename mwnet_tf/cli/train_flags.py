"""`mwnet_tf.train`'s flags and the `Config` they make: one flag per Config field and per
method hyperparameter, the setting's defaults under the flags given, the step schedule that
follows `--epochs`, and the flagfile a run folder keeps (`flags.cfg`).
"""

from __future__ import annotations

from absl import flags

from mwnet_tf import config as config_lib
from mwnet_tf import protocols
from mwnet_tf.data import human_noise
from mwnet_tf.methods import registry


def define_flags() -> None:
    """One flag per Config field (help, choices and bounds from its metadata; a field the
    setting decides has no default of its own), the run folder, --dry_run, and one flag per
    method hyperparameter. Called by `run`, not at import."""
    for f in config_lib.flag_fields():
        m = f.metadata
        _define(f.name, config_lib.field_type(f), None if m["by_setting"] else f.default,
                m["help"], m["choices"], m["lower"], m["upper"])
    flags.DEFINE_string("workdir", None, "Run folder (default: runs/<setting>).")
    flags.DEFINE_bool("dry_run", False, "Print the resolved settings as a flagfile and exit.")
    for name, (owners, p) in registry.all_params().items():
        _define(name, p.kind, p.default, f"[{', '.join(owners)}] {p.help}", p.choices, p.lower,
                p.upper)


def _define(name, kind, default, help, choices=None, lower=None, upper=None) -> None:
    if choices is not None:
        flags.DEFINE_enum(name, default, choices, help)
    elif kind is bool:
        flags.DEFINE_bool(name, default, help)
    elif kind is str:
        flags.DEFINE_string(name, default, help)
    elif kind is tuple:
        flags.DEFINE_list(name, default, help)
    else:
        define = flags.DEFINE_integer if kind is int else flags.DEFINE_float
        define(name, default, help, lower_bound=lower, upper_bound=upper)


def config_from_flags(fv: flags.FlagValues, sources: list[dict[str, str]] | None = None,
                      notes: list[str] | None = None) -> config_lib.Config:
    """Paper defaults for the setting, overridden by every flag given explicitly; the rules
    are `config.validate`'s, but for those below that only a flag's presence can tell.

    sources: where each flag was set (`commandline.flag_sources`; None: every flag given on
        the command line), for the learning-rate schedule (`_decay_schedule`).
    notes: receives one line per default derived from the flags (the log prints them).
    """
    values = protocols.paper_defaults(fv.dataset, fv.noise, fv.imbalance, fv.method)
    for name in (f.name for f in config_lib.flag_fields()):
        if fv[name].present or name not in values:  # given, or no setting default
            value = fv[name].value
            if value is not None or name == "data_dir":
                values[name] = value
    # Every Config has a meta_per_class, which Clothing1M ignores (its meta set is its clean
    # validation images): only the flag given says the user meant one.
    if values["dataset"] == "clothing1m" and fv["meta_per_class"].present:
        raise ValueError(config_lib.not_for_clothing1m(["--meta_per_class"]))
    # The flag --rate always has a value: without noise (none, human) only a given one counts.
    if values.get("noise") in ("none", "human") and not fv["rate"].present:
        values["rate"] = 0.0
    if values.get("noise") == "human" and values.get("noise_label_set") is None:
        values["noise_label_set"] = human_noise.default_label_set(
            values["dataset"], values.get("noise_labels"))
    # The method's hyperparameters, and another method's when given (Config rejects those).
    values["method_params"] = {
        name: fv[name].value for name, (owners, _) in registry.all_params().items()
        if fv[name].present or (values["method"] in owners and fv[name].value is not None)}
    decay = values.get("lr_decay_epochs") or ()
    try:
        values["lr_decay_epochs"] = tuple(int(e) for e in decay if str(e).strip())
    except ValueError:
        raise ValueError("lr_decay_epochs must be a comma-separated list of integers") from None
    note = _decay_schedule(fv, values, sources)
    if note and notes is not None:
        notes.append(note)
    return config_lib.Config(**values)


def _decay_schedule(fv: flags.FlagValues, values: dict, sources) -> str | None:
    """--epochs given without a schedule of its own: the schedule it would have run with (the
    setting's default, or a flagfile's written for its own --epochs) moves to the same
    fractions of the new run (`protocols.scaled_schedule`), in `values`. A schedule given with or
    after --epochs is the user's and stays as given. Returns the line saying what was done."""
    if not fv["epochs"].present:
        return None
    if sources is None:
        sources = [{"epochs": str(fv.epochs),
                    **({"lr_decay_epochs": ""} if fv["lr_decay_epochs"].present else {})}]
    named = [i for i, s in enumerate(sources) if "epochs" in s]
    decay_at = [i for i, s in enumerate(sources) if "lr_decay_epochs" in s]
    if not named:
        return None
    if decay_at and (decay_at[-1] >= named[-1] or "epochs" not in sources[decay_at[-1]]):
        return None  # given with the epochs, or after them
    epochs = values["epochs"]
    if decay_at:
        base_epochs, decay = int(sources[decay_at[-1]]["epochs"]), values["lr_decay_epochs"]
        whose = "the flagfile's"
    else:
        paper = protocols.paper_defaults(values["dataset"], values["noise"], values["imbalance"])
        base_epochs, decay = paper["epochs"], tuple(paper.get("lr_decay_epochs", ()))
        whose = "the setting's"
    if not decay or base_epochs == epochs:
        return None
    values["lr_decay_epochs"] = new = protocols.scaled_schedule(decay, base_epochs, epochs)
    was = f"{whose} decay after epochs {','.join(map(str, decay))} of {base_epochs}"
    if not new:
        return (f"lr schedule: constant lr (--epochs={epochs} leaves no room for {was}; "
                "--lr_decay_epochs sets one)")
    return (f"lr schedule: decay after epochs {','.join(map(str, new))} ({was}, scaled to "
            f"--epochs={epochs}; --lr_decay_epochs sets another)")


def config_to_flagfile(config: config_lib.Config, workdir: str) -> str:
    lines = []
    for name, value in config.to_dict().items():
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, list):
            lines.append(f"--{name}={','.join(str(v) for v in value)}")
        else:
            lines.append(f"--{name}={value}")
    lines.append(f"--workdir={workdir}")
    return "\n".join(lines) + "\n"
