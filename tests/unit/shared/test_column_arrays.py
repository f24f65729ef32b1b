"""column_arrays: the rows of a batch as the array parameters of one unnest statement."""

from dataclasses import dataclass

from shared.db import column_arrays


@dataclass(frozen=True)
class Row:
    id: int
    name: str
    note: str | None


def test_objects_give_one_list_per_named_attribute_in_row_order() -> None:
    rows = [Row(1, "a", None), Row(2, "b", "x")]
    assert column_arrays(rows, "name", "id") == {"name": ["a", "b"], "id": [1, 2]}


def test_tuples_are_read_in_the_order_of_the_names() -> None:
    assert column_arrays([(1, "a"), (2, "b")], "id", "name") == {"id": [1, 2], "name": ["a", "b"]}


def test_no_rows_give_empty_columns() -> None:
    assert column_arrays([], "id", "name") == {"id": [], "name": []}


def test_a_tuple_with_a_missing_column_is_refused() -> None:
    try:
        column_arrays([(1, "a"), (2,)], "id", "name")
    except ValueError:
        return
    raise AssertionError("a short row must not shift the columns")


def test_dataclass_rows_default_to_their_fields() -> None:
    assert column_arrays([Row(1, "a", None)]) == {"id": [1], "name": ["a"], "note": [None]}
