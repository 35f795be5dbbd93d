"""The video's labels (classes): the list every object takes its label from, and label files
(``classes.txt``, a YOLO ``data.yaml``).

A label is cleaned as object names are (:func:`annotation.formats.clean_name`: no control,
zero-width or direction characters; a label of nothing else is empty and left out). A video has
at most MAX_LABELS; a list or a file of more different names is refused before any other work,
and repeats are found with a set, so 400,000 names cost a fraction of a second, not minutes. A
label file is at most MAX_LABEL_FILE_BYTES, checked before it is read or parsed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from annotation.document import DEFAULT_LABEL, UserError
from annotation.formats import clean_name

if TYPE_CHECKING:
    from annotation.work import Work

MAX_LABELS = 255  # classes of one video (semantic PNG masks hold one class per pixel value)
MAX_LABEL_FILE_BYTES = 2**20  # a classes.txt or data.yaml (255 names of 60 characters take 15 kB)


def exported_labels(labels: Iterable[str], used: Iterable[str]) -> tuple[str, ...]:
    """The class list the exports write (class ids follow it): the work's labels, less the
    default label when no object uses it. That label is always in the list, so that a new
    object has one; it becomes a class only when an object has it. Labels the user added stay,
    used or not: a person building a dataset names all its classes."""
    used = set(used)
    return tuple(label for label in labels if label != DEFAULT_LABEL or label in used)


def distinct_labels(names: Iterable[object], known: Iterable[str] = (), what: str = "") -> list[str]:
    """The names cleaned, empty ones and repeats (also of ``known``) left out, in order; a
    UserError as soon as they and ``known`` make more than MAX_LABELS (``what`` names the
    file they come from, for the message)."""
    seen = set(known)
    added: dict[str, None] = {}
    for name in names:
        clean = clean_name(str(name))
        if not clean or clean in seen or clean in added:
            continue
        added[clean] = None
        if len(seen) + len(added) > MAX_LABELS:
            source = f"'{what}' names" if what else "these would make"
            raise UserError(f"A video can have at most {MAX_LABELS} labels; {source} more than that.")
    return list(added)


def add_labels(work: Work, names: list[str]) -> list[str]:
    """Add classes to the video's label list (cleaned like object names; repeats skipped) ->
    the ones added. Refused, adding nothing, past MAX_LABELS."""
    added = distinct_labels(names, work.labels)
    work.labels.extend(added)
    return added


def rename_label(work: Work, old: str, new: str) -> str:
    """Rename a class everywhere: the list, every object of that class, the next object's."""
    clean = clean_name(new)
    if old not in work.labels:
        raise UserError(f"There is no label '{old}'.")
    if not clean:
        raise UserError("A label needs a name.")
    if clean != old and clean in work.labels:
        raise UserError(f"There is a label '{clean}' already: give the objects that label instead.")
    work.labels[work.labels.index(old)] = clean
    for obj_id, info in work.registry.items():
        if info.label == old:
            work.registry[obj_id] = replace(info, label=clean)
    if work.last_label == old:
        work.last_label = clean
    return f"Renamed the label '{old}' to '{clean}'."


def remove_label(work: Work, name: str) -> str:
    if name not in work.labels:
        raise UserError(f"There is no label '{name}'.")
    users = [o.name for o in work.objects if o.label == name]
    if users:
        raise UserError(f"'{name}' is the label of {', '.join(repr(u) for u in users[:3])}: give them another first.")
    if len(work.labels) == 1:
        raise UserError("The video needs at least one label.")
    work.labels.remove(name)
    if work.last_label == name:
        work.last_label = work.labels[-1]
    return f"Removed the label '{name}'."


def set_label(work: Work, obj_id: int, label: str) -> str:
    """Give an object a class from the list; new objects take it too."""
    info = work.object(obj_id)
    if label not in work.labels:
        raise UserError(f"'{label}' is not one of the labels ({', '.join(work.labels)}): add it first.")
    work.update_object(obj_id, label=label)
    work.last_label = label
    return f"'{info.name}' is a '{label}'."


def read_label_file(path: str | Path) -> list[str]:
    """Class names from a ``classes.txt`` (one per line) or a YOLO ``data.yaml`` (``names`` as
    a list or an index -> name mapping), in class order, cleaned (a byte order mark and
    invisible characters dropped). Refused: a file over MAX_LABEL_FILE_BYTES (before it is
    read), one naming more than MAX_LABELS different classes (before anything else)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_LABEL_FILE_BYTES:
            raise UserError(f"The label file '{path.name}' is {size / 2**20:.1f} MB; the most a label file may be "
                            f"is {MAX_LABEL_FILE_BYTES // 2**20} MB ({MAX_LABELS} labels take a few kB).")  # fmt: skip
        text = path.read_bytes().decode("utf-8-sig")  # a byte order mark from a Windows editor is not a label
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "it is not UTF-8 text"
        raise UserError(f"Could not read the label file '{path.name}' ({reason}).") from None
    if path.suffix.lower() not in (".yaml", ".yml"):
        names = text.splitlines()
        distinct_labels(names, what=path.name)  # more than MAX_LABELS: refused here, before the caller's work
        return [line for line in (clean_name(raw) for raw in names) if line]
    names = _yaml_names(text, path.name)
    distinct_labels(names, what=path.name)
    return [clean_name(str(n)) for n in names]  # empty ones kept: class i is names[i]


def _yaml_names(text: str, name: str) -> list[object]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, 10x PyYAML's own where installed
    try:
        names = (yaml.load(text, Loader=loader) or {}).get("names")
    except (yaml.YAMLError, AttributeError, RecursionError):
        names = None
    if isinstance(names, dict) and all(isinstance(k, int) and not isinstance(k, bool) for k in names):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not all(isinstance(n, (str, int, float)) for n in names):
        raise UserError(f"'{name}' is not a YOLO data.yaml: it needs 'names', a list or index: name pairs.")
    return names
