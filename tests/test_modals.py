"""Reading a modal submission from its payload (discordbot.modals), however Discord nests it."""

import pytest

from discordbot.modals import submitted


def test_action_rows_and_labels_both_give_their_values():
    rows = [{"type": 1, "components": [{"type": 4, "custom_id": "prompt", "value": "a fox"}]}]
    labels = [{"type": 18, "component": {"type": 4, "custom_id": "negative_prompt", "value": ""}}]
    assert submitted(rows + labels) == {"prompt": "a fox", "negative_prompt": ""}


@pytest.mark.parametrize(
    "components",
    [None, "text", 7, [None, 3, "x"], [{"type": 1, "components": "nope"}], [{"custom_id": 5, "value": "v"}]],
)
def test_anything_else_gives_no_values_and_no_error(components):
    assert submitted(components) == {}
