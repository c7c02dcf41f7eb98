"""The README: its Python example runs as written, its config-group list is conf/."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_the_config_group_lists_name_every_option_in_conf():
    """README's config-group list is conf/ itself: every group, every option, nothing else."""
    from stn_repro.config import CONF_DIR

    text = README.read_text()
    block = text.split("<!-- config-groups -->")[1].split("<!-- /config-groups -->")[0]
    listed = {}
    for item in re.split(r"\n- ", "\n" + block.strip()):
        if item.strip():
            group, options = item.split(":", 1)
            listed[group.strip(" `")] = {o.strip() for o in options.replace("\n", " ").split(",")}
    found = {}
    for path in CONF_DIR.rglob("*.yaml"):
        if path.parent != CONF_DIR:
            found.setdefault(path.parent.relative_to(CONF_DIR).as_posix(), set()).add(path.stem)
    assert listed == found
