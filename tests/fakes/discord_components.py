"""Discord's rules for message components and modals, as the fake Discord server enforces them.

From Discord's developer documentation (Components reference and Interactions: modal
responses), as of 2026: a message carries at most 5 action rows; a row holds at most 5
buttons, or one select menu; a button has a `custom_id` of at most 100 characters (a link
button a `url` instead) and a label of at most 80; `custom_id`s are unique within a message. A
modal has a `custom_id` (100), a title (45) and 1 to 5 action rows, each holding one text input
(`custom_id` 100, label 45, style 1 short or 2 paragraph, lengths within 0-4000, placeholder
100). Violations are 400 50035 Invalid Form Body with the failing path, as Discord answers.
"""

from __future__ import annotations

from typing import Any, Protocol

ACTION_ROW, BUTTON, STRING_SELECT, TEXT_INPUT = 1, 2, 3, 4
LINK_STYLE = 5
ROWS_MAX, BUTTONS_PER_ROW_MAX = 5, 5
CUSTOM_ID_MAX, BUTTON_LABEL_MAX = 100, 80
MODAL_TITLE_MAX, TEXT_INPUT_LABEL_MAX, TEXT_INPUT_VALUE_MAX, PLACEHOLDER_MAX = 45, 45, 4000, 100


class Errors(Protocol):
    def add(self, path: tuple, code: str, message: str) -> None: ...
    def too_long(self, path: tuple, value: Any, limit: int) -> None: ...


def validate_components(components: list, errors: Errors, prefix: tuple) -> None:
    """The components of a message (a create, an edit, or an interaction response)."""
    path = prefix + ("components",)
    errors.too_long(path, components, ROWS_MAX)
    seen: set[str] = set()
    for i, row in enumerate(components or []):
        row_path = path + (i,)
        if row.get("type") != ACTION_ROW:
            errors.add(row_path + ("type",), "BASE_TYPE_CHOICES", "Value must be one of {1}.")
            continue
        children = row.get("components") or []
        if not children:
            errors.add(row_path + ("components",), "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
        selects = [c for c in children if c.get("type") == STRING_SELECT]
        if selects and len(children) > 1:
            errors.add(
                row_path + ("components",),
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            )
        errors.too_long(row_path + ("components",), children, BUTTONS_PER_ROW_MAX)
        for j, child in enumerate(children):
            child_path = row_path + ("components", j)
            if child.get("type") == BUTTON:
                _validate_button(child, errors, child_path)
            custom_id = child.get("custom_id")
            if custom_id is not None:
                if custom_id in seen:
                    errors.add(
                        child_path + ("custom_id",),
                        "COMPONENT_CUSTOM_ID_DUPLICATED",
                        "Component custom id cannot be duplicated",
                    )
                seen.add(custom_id)


def _validate_button(button: dict, errors: Errors, path: tuple) -> None:
    if button.get("style") == LINK_STYLE:
        if not button.get("url"):
            errors.add(path + ("url",), "BASE_TYPE_REQUIRED", "This field is required")
    elif not button.get("custom_id"):
        errors.add(path + ("custom_id",), "BASE_TYPE_REQUIRED", "This field is required")
    errors.too_long(path + ("custom_id",), button.get("custom_id"), CUSTOM_ID_MAX)
    errors.too_long(path + ("label",), button.get("label"), BUTTON_LABEL_MAX)


def validate_modal(data: dict, errors: Errors, prefix: tuple = ("data",)) -> None:
    """A type 9 (MODAL) interaction response."""
    for key, limit in (("custom_id", CUSTOM_ID_MAX), ("title", MODAL_TITLE_MAX)):
        if not data.get(key):
            errors.add(prefix + (key,), "BASE_TYPE_REQUIRED", "This field is required")
        errors.too_long(prefix + (key,), data.get(key), limit)
    rows = data.get("components") or []
    if not 1 <= len(rows) <= ROWS_MAX:
        errors.add(prefix + ("components",), "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {ROWS_MAX} in length.")
    for i, row in enumerate(rows):
        inputs = row.get("components") or []
        row_path = prefix + ("components", i, "components")
        if row.get("type") != ACTION_ROW or len(inputs) != 1 or inputs[0].get("type") != TEXT_INPUT:
            errors.add(row_path, "BASE_TYPE_BAD_LENGTH", "An action row in a modal holds exactly one text input.")
            continue
        _validate_text_input(inputs[0], errors, row_path + (0,))


def _validate_text_input(field: dict, errors: Errors, path: tuple) -> None:
    if not field.get("custom_id"):
        errors.add(path + ("custom_id",), "BASE_TYPE_REQUIRED", "This field is required")
    errors.too_long(path + ("custom_id",), field.get("custom_id"), CUSTOM_ID_MAX)
    errors.too_long(path + ("label",), field.get("label"), TEXT_INPUT_LABEL_MAX)
    errors.too_long(path + ("placeholder",), field.get("placeholder"), PLACEHOLDER_MAX)
    errors.too_long(path + ("value",), field.get("value"), TEXT_INPUT_VALUE_MAX)
    if field.get("style") not in (1, 2):
        errors.add(path + ("style",), "BASE_TYPE_CHOICES", "Value must be one of {1, 2}.")
    for key in ("min_length", "max_length"):
        value = field.get(key)
        if value is not None and not 0 <= value <= TEXT_INPUT_VALUE_MAX:
            errors.add(path + (key,), "BASE_TYPE_BAD_INT", f"Must be between 0 and {TEXT_INPUT_VALUE_MAX}.")


def submitted_values(modal: dict, values: dict[str, str]) -> list[dict]:
    """The components of a MODAL_SUBMIT for ``modal`` with the user's ``values`` (custom_id -> text;
    a field left out is submitted with its prefilled value, as Discord does)."""
    rows = []
    for row in modal.get("components") or []:
        field = row["components"][0]
        value = values.get(field["custom_id"], field.get("value", ""))
        rows.append(
            {"type": ACTION_ROW, "components": [{"type": TEXT_INPUT, "custom_id": field["custom_id"], "value": value}]}
        )
    unknown = set(values) - {row["components"][0]["custom_id"] for row in rows}
    if unknown:
        raise ValueError(f"the modal has no fields {sorted(unknown)}")
    return rows
