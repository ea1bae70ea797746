"""The scenarios' helpers read Ansible's output as a person sees it, colour or none."""

from scenario import plain

COLOURED = "\x1b[0;33mthor-01\x1b[0m : \x1b[0;32mok=3   \x1b[0m \x1b[0;33mchanged=1   \x1b[0m unreachable=0"


def test_colour_codes_are_stripped():
    assert plain(COLOURED) == "thor-01 : ok=3    changed=1    unreachable=0"


def test_hyperlinks_keep_their_text():
    assert plain("\x1b]8;;https://docs.ansible.com/\x1b\\var-naming\x1b]8;;\x1b\\ rule") == "var-naming rule"


def test_plain_text_is_left_as_it_is():
    assert plain("PLAY RECAP *****\n") == "PLAY RECAP *****\n"
