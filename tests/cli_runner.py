"""Runs `python -m mwnet_tf.train ARGS` for many argument lists, paying for TensorFlow's import
once: this process imports `mwnet_tf.train` and what its `main` imports after parsing the flags
(`train.load_training`: TensorFlow and the training loop), then forks one child per
case, which sets `sys.argv` and the case's environment and calls the same entry point
(`train.run`: absl parses argv, flagfiles included; a case's "module", such as
"mwnet_tf.predict", names another command whose `run` is called instead). The parent never
runs a TensorFlow op, so each child starts its runtime fresh, as a new process does.

    python tests/cli_runner.py     # one case per line in, one result per line out

A case is a JSON line {"argv": [...], "env": {...}, "cwd": "..."} (an env value null removes
the variable); its result, written as one line as soon as its child has ended, is {"code":
exit status, "stdout": ..., "stderr": ...}, so a test can look at the run folder between
command lines (`tests/cli.py`, `CliSession`).
"""

import importlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mwnet_tf import train  # noqa: E402

train.load_training()


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def run_case(case: dict) -> dict:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the command line of one case
        os.close(out_r)
        os.close(err_r)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        code = 0
        try:
            os.chdir(case.get("cwd") or os.getcwd())
            for k, v in case.get("env", {}).items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            module = case.get("module", "mwnet_tf.train")  # or another command's
            sys.argv = [module, *case["argv"]]
            importlib.import_module(module).run()
        except SystemExit as e:
            code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        except BaseException:  # what `python -m` would print and exit 1 with
            import traceback
            traceback.print_exc()
            code = 1
        import atexit
        atexit._run_exitfuncs()  # as a process's exit does (the run lock's release)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(out_w)
    os.close(err_w)
    import threading
    box = {}
    reader = threading.Thread(target=lambda: box.update(out=_read_all(out_r)))
    reader.start()
    err = _read_all(err_r)
    reader.join()
    _, status = os.waitpid(pid, 0)
    return {"code": os.waitstatus_to_exitcode(status), "stdout": box["out"], "stderr": err}


if __name__ == "__main__":
    for line in sys.stdin:
        sys.stdout.write(json.dumps(run_case(json.loads(line))) + "\n")
        sys.stdout.flush()
