"""Reading a source's layered mapping files (each file once per load) and its code maps."""

from __future__ import annotations

from pathlib import Path

from gateway.errors import MappingError
from gateway.mapping.codemaps import CodeMap
from gateway.mapping.files import LineDict, read_codemap_file, read_mapping_file


class Documents:
    """The mapping and code map files read while one mappings folder loads, each read once.

    Several sources extend the same layer (``common``); its files are parsed and checked
    once. The documents are only read afterwards, never changed.
    """

    def __init__(self) -> None:
        self._mappings: dict[Path, LineDict] = {}
        self._codemaps: dict[Path, LineDict] = {}

    def mapping(self, file: Path) -> LineDict:
        """The checked mapping.yaml at ``file``."""
        doc = self._mappings.get(file)
        if doc is None:
            doc = self._mappings[file] = read_mapping_file(file)
        return doc

    def codemaps(self, file: Path) -> LineDict:
        """The checked codemaps.yaml at ``file``."""
        doc = self._codemaps.get(file)
        if doc is None:
            doc = self._codemaps[file] = read_codemap_file(file)
        return doc


def layers_of(
    documents: Documents, directory: Path, source: str, seen: tuple[str, ...] = ()
) -> list[tuple[Path, LineDict]]:
    """The mapping files of ``source`` and everything it extends, most general first."""
    file = directory / source / "mapping.yaml"
    if source in seen:
        raise MappingError(f"extends loops back to {source}", file=str(file))
    if not file.is_file():
        raise MappingError(f"no mapping.yaml for {source!r}", file=str(file))
    doc = documents.mapping(file)
    if doc["source"] != source:
        raise MappingError(
            f"source {doc['source']!r} differs from its folder name {source!r}",
            file=str(file),
            line=doc.lines.get("source"),
        )
    parent = doc.get("extends")
    below = layers_of(documents, directory, parent, (*seen, source)) if parent else []
    return [*below, (file, doc)]


def codemaps_of(
    documents: Documents, layers: list[tuple[Path, LineDict]], source: str
) -> dict[str, CodeMap]:
    """Code maps from every layer's codemaps.yaml, nearer layers overriding by name."""
    out: dict[str, CodeMap] = {}
    for file, _ in layers:
        cm_file = file.parent / "codemaps.yaml"
        if not cm_file.is_file():
            continue
        doc = documents.codemaps(cm_file)
        for name, spec in doc["codemaps"].items():
            if spec["unknown"] == "default" and "default" not in spec:
                raise MappingError(
                    f"code map {name}: policy default needs a default",
                    file=str(cm_file),
                    line=doc["codemaps"].lines.get(name),
                )
            entries = {str(k): v for k, v in spec["map"].items()}
            out[name] = CodeMap(
                name, source, entries, spec["unknown"], spec.get("default"), spec.get("system")
            )
    return out
