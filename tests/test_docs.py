"""The documentation: README.md and docs/*.md.

- every relative link and image resolves to a file of the repository, and every `#anchor` to a
  heading of the page it names;
- every ```python block runs as it stands, in a fresh interpreter from the repository's root,
  and where a ```text block follows it directly, prints exactly that text (the convention of
  docs/tests.md, "Examples in the docs");
- the files, flagfiles and methods the pages name exist, and the pages speak of the project
  alone.
"""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from mwnet_tf import report
from mwnet_tf.reporting import tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
PAGES = ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(DOCS)
                               if f.endswith(".md"))

FENCE = re.compile(r"^```(\S*)\n(.*?)^```\n", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def read(page):
    with open(os.path.join(REPO, page), encoding="utf-8") as f:
        return f.read()


def fenced_blocks(text):
    """[(language, code, line number of the opening fence, end offset)] in order."""
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1, m.start(), m.end())
            for m in FENCE.finditer(text)]


def prose(text):
    """The text outside fenced blocks and inline code spans (where links are links)."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]{2,}|`", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page):
    """The anchors of a page's headings (GitHub numbers repeats: x, x-1, x-2)."""
    seen, found = {}, set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", read(page)), re.M):
        s = slug(heading)
        n = seen.get(s, 0)
        found.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return found


def examples():
    """Every ```python block of the pages, with the ```text block right after it (or None)."""
    found = []
    for page in PAGES:
        text = read(page)
        blocks = fenced_blocks(text)
        for i, (lang, code, line, _, end) in enumerate(blocks):
            if lang != "python":
                continue
            expected = None
            if i + 1 < len(blocks):
                nlang, ncode, _, nstart, _ = blocks[i + 1]
                if nlang == "text" and not text[end:nstart].strip():
                    expected = ncode
            found.append(pytest.param(code, expected, id=f"{page}:{line}"))
    return found


def test_pages_exist_and_the_readme_indexes_every_docs_page():
    readme = read("README.md")
    assert len(readme.splitlines()) <= 300, "README.md is the front door: at most 300 lines"
    for page in PAGES[1:]:
        assert f"({page})" in readme, f"README.md does not link {page}"


def test_links_and_images_resolve():
    broken = []
    for page in PAGES:
        for target in LINK.findall(prose(read(page))):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(os.path.join(REPO, dest)):
                broken.append(f"{page}: {target} (no file {dest})")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                broken.append(f"{page}: {target} (no heading #{anchor} in {dest})")
    assert not broken, "\n".join(broken)


def test_files_named_in_the_pages_exist():
    """Paths of the repository written in the text (`mwnet_tf/...`, `tests/...`, `flags/...`,
    `benchmarks/...`, `runs/reference/...`) name files or folders that exist."""
    missing = []
    for page in PAGES:
        for path in re.findall(r"(?<![\w./-])((?:mwnet_tf|tests|flags|benchmarks|runs/reference)"
                               r"/[\w./-]*\w)", read(page)):
            if "*" not in path and not os.path.exists(os.path.join(REPO, path)):
                missing.append(f"{page}: {path}")
    assert not missing, "\n".join(missing)


def test_every_flagfile_named_in_the_pages_exists():
    names = set()
    for page in PAGES:
        names |= set(re.findall(r"flags/([\w.]+\.cfg)", read(page)))
    assert "quickstart.cfg" in names
    for name in names:
        assert os.path.exists(os.path.join(REPO, "flags", name)), name


def test_the_reproducing_page_names_every_flagfile():
    text = read(os.path.join("docs", "reproducing.md"))
    for name in sorted(os.listdir(os.path.join(REPO, "flags"))):
        if name.endswith(".cfg"):
            assert f"`{name}`" in text, name


def test_every_method_and_its_flags_are_in_the_methods_page():
    from mwnet_tf import methods
    from mwnet_tf.config import METHODS

    text = read(os.path.join("docs", "methods.md"))
    for name in METHODS:
        assert f"`{name}`" in text, name
        for p in methods.get(name).params:
            assert f"`--{p.name}`" in text, p.name


def test_the_pages_speak_of_the_project_alone():
    """No pointers outside the repository, nor words of how the project was made."""
    bad = re.compile(r"\.\./shared|/work/|(?<![\w_])(issues?|brief|VM|CEO)(?![\w_])")
    found = [f"{page}:{n}: {line.strip()}" for page in PAGES
             for n, line in enumerate(read(page).splitlines(), 1) if bad.search(line)]
    assert not found, "\n".join(found)


def test_python_blocks_compile_and_show_their_output():
    params = examples()
    assert len(params) >= 3
    for p in params:
        code, expected = p.values
        compile(code, p.id, "exec")
        assert expected is not None, f"{p.id}: a python block without the text block it prints"


@pytest.mark.e2e
@pytest.mark.e2e
@pytest.mark.parametrize("code,expected", examples())
def test_python_block_runs_and_prints_what_the_page_shows(code, expected):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    if expected is not None:
        assert r.stdout == expected, f"printed:\n{r.stdout}\nthe page shows:\n{expected}"


MEAN_STD = re.compile(r"(?<![\w.])(\d+\.\d+) ± (\d+\.\d+)")
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


def rounds_to(cell, quoted):
    """Whether the table's `cell` (a string) is `quoted` (a string) rounded to its decimals."""
    places = len(quoted.split(".")[1])
    return (len(cell.split(".")[1]) >= places
            and abs(float(cell) - float(quoted)) <= 0.5 * 10 ** -places + 1e-9)


def generated_text():
    """The generated blocks of every page (report.BLOCK: the markers `--pages` rewrites)."""
    return "\n".join(m.group(2) for page in PAGES for m in report.BLOCK.finditer(read(page)))


def test_every_mean_and_std_the_prose_quotes_is_a_cell_of_a_generated_table():
    """A figure quoted as "mean ± std" outside the generated blocks is one of their cells
    (rounded), so that re-keeping runs cannot leave a stale copy in the prose."""
    cells = MEAN_STD.findall(generated_text())
    assert len(cells) > 100
    stale = [f"{page}: {mean} ± {std}" for page in PAGES
             for mean, std in MEAN_STD.findall(report.BLOCK.sub("", read(page)))
             if not any(rounds_to(m, mean) and rounds_to(s, std) for m, s in cells)]
    assert not stale, stale


def test_every_figure_of_the_results_guide_is_a_cell_of_a_generated_table():
    """The "which method when" guide of docs/results.md cites table cells: each decimal in it
    is a cell of a generated block (rounded)."""
    text = read(os.path.join("docs", "results.md"))
    start = text.index("| bias | try first |")
    guide = text[start:text.index("\n\n", start)]
    cells = DECIMAL.findall(generated_text())
    quoted = DECIMAL.findall(guide)
    assert len(quoted) > 50
    missing = sorted({q for q in quoted if not any(rounds_to(c, q) for c in cells)})
    assert not missing, missing


def test_every_accuracy_the_prose_quotes_comes_from_a_kept_run_or_the_paper():
    """A figure like 87.15 (two digits, two decimals: an accuracy as the tables print it)
    outside the generated blocks and code is a generated cell, the final or best test
    accuracy of a run kept under runs/reference, or a figure of the paper's tables
    (`tables.paper_tables`)."""
    known = set(DECIMAL.findall(generated_text()))
    for path in glob.glob(os.path.join(REPO, "runs", "reference", "*", "*", "results.json")):
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        known.update(f"{run[k]:.2f}" for k in ("test_accuracy", "best_test_accuracy")
                     if k in run)

    def paper(x):
        if isinstance(x, float):
            known.add(f"{x:.2f}")
        for v in (x.values() if isinstance(x, dict) else x if isinstance(x, list) else ()):
            paper(v)

    paper(tables.paper_tables())
    quoted = [(page, x) for page in PAGES
              for x in re.findall(r"(?<![\w.])\d{2}\.\d\d(?![\w.])",
                                  FENCE.sub("", report.BLOCK.sub("", read(page))))]
    assert len(quoted) > 150
    unknown = [f"{page}: {x}" for page, x in quoted if x not in known]
    assert not unknown, unknown
