"""Where models live once trained: immutable versions and one small pointer to the champion.

    models/versions/<model id>/los-model.json     never overwritten
    models/versions/<model id>/model-card.json    (a refused challenger's card says why)
    models/champion.json                          {"kind": "los-model-pointer", "model": ..., ...}

``LOS_MODEL_URL`` names the pointer (a blob of the models container, or a local file); every
worker's predictor reads it on its refresh and follows it to the model, so promoting a model
is moving the pointer, and a rollback is moving it back. The pointer moves with If-Match on
the ETag it was read at: two retrainings cannot both move it.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

POINTER_KIND = "los-model-pointer"
HISTORY = 10  # earlier champions a pointer remembers, for rollbacks


class PointerMoved(Exception):
    """The pointer changed since it was read (another retraining moved it)."""


class MalformedPointer(ValueError):
    """The pointer says it is one (its ``kind``) but a field is missing or of the wrong type:
    a hand-edited or truncated pointer, said plainly rather than failing later."""


def _text(document: Mapping[str, Any], key: str, where: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPointer(f"{where}: {key!r} must be a non-empty string")
    return value


@dataclass(frozen=True)
class Champion:
    """A model that is or was champion: its id, its files (relative to the pointer's folder)
    and when it was promoted."""

    model_id: str
    model: str
    card: str
    promoted_at: str

    @classmethod
    def from_json(cls, document: object, where: str) -> Champion:
        if not isinstance(document, Mapping):
            raise MalformedPointer(f"{where} must be an object")
        return cls(
            _text(document, "modelId", where),
            sibling_name(_text(document, "model", where)),
            sibling_name(_text(document, "card", where)),
            _text(document, "promotedAt", where),
        )

    def as_json(self) -> dict[str, str]:
        return {
            "modelId": self.model_id,
            "model": self.model,
            "card": self.card,
            "promotedAt": self.promoted_at,
        }


@dataclass(frozen=True)
class ChampionPointer:
    """The champion pointer (``champion.json``): the champion, why it is, and the earlier
    ones a rollback can go back to (newest first)."""

    champion: Champion
    reason: str
    history: tuple[Champion, ...] = ()

    @property
    def model_id(self) -> str:
        return self.champion.model_id

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ChampionPointer:
        """The pointer ``document`` holds; :class:`MalformedPointer` names what is wrong."""
        history = document.get("history", [])
        if not isinstance(history, list):
            raise MalformedPointer("the champion pointer's 'history' must be a list")
        reason = document.get("reason", "")
        return cls(
            Champion.from_json(document, "the champion pointer"),
            reason if isinstance(reason, str) else "",
            tuple(
                Champion.from_json(entry, f"the champion pointer's history[{i}]")
                for i, entry in enumerate(history)
            ),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": POINTER_KIND,
            **self.champion.as_json(),
            "reason": self.reason,
            "history": [earlier.as_json() for earlier in self.history],
        }

    def promoting(self, model_id: str, promoted_at: str, reason: str) -> ChampionPointer:
        """The pointer that makes ``model_id`` champion, remembering this one's."""
        return pointer_to(model_id, self, promoted_at, reason)

    def rolled_back(self, rolled_at: str) -> ChampionPointer:
        """The pointer back at the previous champion; ValueError when there is none."""
        if not self.history:
            raise ValueError("there is no earlier champion to go back to")
        earlier, *rest = self.history
        return ChampionPointer(
            Champion(earlier.model_id, earlier.model, earlier.card, rolled_at),
            "rolled back",
            tuple(rest),
        )


def is_pointer(data: bytes) -> ChampionPointer | None:
    """The pointer ``data`` holds, or None when it is something else (a model file);
    :class:`MalformedPointer` when it says it is a pointer but is not a valid one."""
    if not data.lstrip().startswith(b"{") or len(data) > 1024 * 1024:
        return None
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if isinstance(document, dict) and document.get("kind") == POINTER_KIND:
        return ChampionPointer.from_json(document)
    return None


def sibling_name(name: str) -> str:
    """A name a pointer may give: a relative path within the models folder, nothing above."""
    clean = posixpath.normpath(name)
    if clean.startswith(("/", "..")) or clean == "." or "\\" in clean:
        raise ValueError("the pointer names a file outside the models folder")
    return clean


class ModelStore(Protocol):
    def read_pointer(self) -> tuple[ChampionPointer | None, str | None]:
        """The pointer and its version (ETag), or (None, None) when there is none."""
        ...

    def read(self, name: str) -> bytes:
        """A file of the models folder; :class:`FileNotFoundError` when there is none."""
        ...

    def write_new(self, name: str, data: bytes) -> None:
        """Write a file that must not exist yet (a version is never overwritten);
        :class:`FileExistsError` when it does."""
        ...

    def move_pointer(self, pointer: ChampionPointer, expected: str | None) -> None:
        """Replace the pointer if it is still at version ``expected`` (None: absent), else
        raise :class:`PointerMoved`."""
        ...


class DirectoryStore:
    """A local folder (development, tests without storage): the pointer is a file in it."""

    def __init__(self, pointer_path: Path) -> None:
        self.folder, self.pointer = pointer_path.parent, pointer_path

    def read_pointer(self) -> tuple[ChampionPointer | None, str | None]:
        if not self.pointer.exists():
            return None, None
        data = self.pointer.read_bytes()
        return is_pointer(data), str(self.pointer.stat().st_mtime_ns)

    def read(self, name: str) -> bytes:
        return (self.folder / sibling_name(name)).read_bytes()

    def write_new(self, name: str, data: bytes) -> None:
        path = self.folder / sibling_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as out:  # x: never over an existing version
            out.write(data)

    def move_pointer(self, pointer: ChampionPointer, expected: str | None) -> None:
        if self.read_pointer()[1] != expected:
            raise PointerMoved("the champion pointer moved while this retraining ran")
        temporary = self.pointer.with_suffix(".moving")
        temporary.write_text(json.dumps(pointer.as_json(), indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.pointer)  # atomic: a reader sees the old or the new pointer


class BlobStore:
    """The models container: the pointer is a blob beside the versions. ``container`` is an
    azure.storage.blob ContainerClient with write access to it (and only it)."""

    def __init__(self, container: Any, pointer_name: str) -> None:
        self.container, self.pointer = container, pointer_name
        self.folder = posixpath.dirname(pointer_name)

    def _name(self, name: str) -> str:
        return (
            posixpath.join(self.folder, sibling_name(name)) if self.folder else sibling_name(name)
        )

    def read_pointer(self) -> tuple[ChampionPointer | None, str | None]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self.container.download_blob(self.pointer)
        except ResourceNotFoundError:
            return None, None
        return is_pointer(downloader.readall()), str(downloader.properties.etag)

    def read(self, name: str) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data: bytes = self.container.download_blob(self._name(name)).readall()
        except ResourceNotFoundError:
            raise FileNotFoundError(f"models/{self._name(name)}") from None
        return data

    def write_new(self, name: str, data: bytes) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.container.upload_blob(self._name(name), data, overwrite=False)
        except ResourceExistsError:
            raise FileExistsError(f"models/{self._name(name)}") from None

    def move_pointer(self, pointer: ChampionPointer, expected: str | None) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        data = json.dumps(pointer.as_json(), indent=2).encode()
        try:
            if expected is None:
                self.container.upload_blob(self.pointer, data, overwrite=False)
            else:
                self.container.upload_blob(
                    self.pointer,
                    data,
                    overwrite=True,
                    etag=expected,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            raise PointerMoved("the champion pointer moved while this retraining ran") from None


def pointer_to(
    model_id: str, previous: ChampionPointer | None, promoted_at: str, reason: str
) -> ChampionPointer:
    """The pointer that makes ``model_id`` the champion, remembering the earlier ones."""
    history: tuple[Champion, ...] = ()
    if previous is not None:
        history = (previous.champion, *previous.history)[:HISTORY]
    champion = Champion(
        model_id,
        f"versions/{model_id}/los-model.json",
        f"versions/{model_id}/model-card.json",
        promoted_at,
    )
    return ChampionPointer(champion, reason, history)
