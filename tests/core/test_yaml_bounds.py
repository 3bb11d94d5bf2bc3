"""YAML that could exhaust memory or the stack is refused with one line (``fgi.yamltext``)."""

from __future__ import annotations

import pytest

from fgi.cli import main as fgi_main
from fgi.config import Config, ConfigError, from_dict, load_yaml_text
from fgi.search.space import load_space
from fgi.text.templates import TemplateError, load_templates

# 340 bytes that expand to 9**8 (43 million) strings when aliases are followed
BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
train:
  max_steps: *h
"""


def test_aliases_are_refused_naming_the_line():
    with pytest.raises(ConfigError, match=r"^bomb.yaml: line 2: YAML aliases \(\*a\) are not supported"):
        load_yaml_text(BOMB, "bomb.yaml")


def test_huge_integers_and_deep_nesting_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"^big.yaml: line 2: an integer of 5000 digits \(at most 30\)$"):
        load_yaml_text("train:\n  max_steps: " + "9" * 5000 + "\n", "big.yaml")
    with pytest.raises(ConfigError, match=r"^deep.yaml: line 1: nested deeper than 32 levels$"):
        load_yaml_text("[" * 100000 + "]" * 100000, "deep.yaml")


def test_a_type_error_prints_a_bounded_value():
    with pytest.raises(ConfigError) as info:
        from_dict({"train": {"max_steps": "x" * 100000}})
    message = str(info.value)
    assert message.startswith("train.max_steps: expected an integer, got 'xxx") and len(message) < 200
    assert "(100002 characters)" in message
    with pytest.raises(ConfigError, match=r"^train.batch_size: <an integer of about 5000 digits> is outside \[1, 4096\]$"):
        Config(train=type(Config().train)(batch_size=10**5000))  # an int past Python's str() limit


def test_search_spaces_and_templates_read_yaml_the_same_way(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  loss.tau_pos: &t {type: uniform, low: 0.7, high: 0.9}\n  loss.tau_neg: *t\n")
    with pytest.raises(ConfigError, match=r"space.yaml: line 3: YAML aliases \(\*t\) are not supported"):
        load_space(space, Config())
    templates = tmp_path / "templates.yaml"
    templates.write_text("x: &x 1\ny: *x\n")
    with pytest.raises(TemplateError, match=r"templates.yaml: line 2: YAML aliases \(\*x\)"):
        load_templates(templates)


def test_the_command_says_it_in_one_line(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert fgi_main(["train", "--config", str(bomb)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "YAML aliases (*a) are not supported" in err and str(bomb) in err
