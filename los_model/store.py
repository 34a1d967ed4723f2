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
from pathlib import Path
from typing import Any, Protocol

POINTER_KIND = "los-model-pointer"
HISTORY = 10  # earlier champions a pointer remembers, for rollbacks


class PointerMoved(Exception):
    """The pointer changed since it was read (another retraining moved it)."""


def is_pointer(data: bytes) -> dict[str, Any] | None:
    """The pointer ``data`` holds, or None when it is something else (a model file)."""
    if not data.lstrip().startswith(b"{") or len(data) > 1024 * 1024:
        return None
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if isinstance(document, dict) and document.get("kind") == POINTER_KIND:
        return document
    return None


def sibling_name(name: str) -> str:
    """A name a pointer may give: a relative path within the models folder, nothing above."""
    clean = posixpath.normpath(name)
    if clean.startswith(("/", "..")) or clean == "." or "\\" in clean:
        raise ValueError("the pointer names a file outside the models folder")
    return clean


class ModelStore(Protocol):
    def read_pointer(self) -> tuple[dict[str, Any] | None, str | None]:
        """The pointer and its version (ETag), or (None, None) when there is none."""
        ...

    def read(self, name: str) -> bytes:
        """A file of the models folder; :class:`FileNotFoundError` when there is none."""
        ...

    def write_new(self, name: str, data: bytes) -> None:
        """Write a file that must not exist yet (a version is never overwritten);
        :class:`FileExistsError` when it does."""
        ...

    def move_pointer(self, pointer: dict[str, Any], expected: str | None) -> None:
        """Replace the pointer if it is still at version ``expected`` (None: absent), else
        raise :class:`PointerMoved`."""
        ...


class DirectoryStore:
    """A local folder (development, tests without storage): the pointer is a file in it."""

    def __init__(self, pointer_path: Path) -> None:
        self.folder, self.pointer = pointer_path.parent, pointer_path

    def read_pointer(self) -> tuple[dict[str, Any] | None, str | None]:
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

    def move_pointer(self, pointer: dict[str, Any], expected: str | None) -> None:
        if self.read_pointer()[1] != expected:
            raise PointerMoved("the champion pointer moved while this retraining ran")
        temporary = self.pointer.with_suffix(".moving")
        temporary.write_text(json.dumps(pointer, indent=2) + "\n", encoding="utf-8")
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

    def read_pointer(self) -> tuple[dict[str, Any] | None, str | None]:
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

    def move_pointer(self, pointer: dict[str, Any], expected: str | None) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        data = json.dumps(pointer, indent=2).encode()
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
    model_id: str, previous: dict[str, Any] | None, promoted_at: str, reason: str
) -> dict[str, Any]:
    """The pointer that makes ``model_id`` the champion, remembering the earlier ones."""
    history: list[dict[str, Any]] = []
    if previous is not None:
        earlier = {k: previous[k] for k in ("modelId", "model", "card", "promotedAt")}
        history = [earlier, *previous.get("history", [])][:HISTORY]
    return {
        "kind": POINTER_KIND,
        "modelId": model_id,
        "model": f"versions/{model_id}/los-model.json",
        "card": f"versions/{model_id}/model-card.json",
        "promotedAt": promoted_at,
        "reason": reason,
        "history": history,
    }
