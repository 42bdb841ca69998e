"""A file storage like a bucket (S3 through django-storages): files only through the storage
API, no local path. Tests set it as STORAGES["default"] to show that nothing relies on a path."""

from __future__ import annotations

import os

from django.core.files.storage import InMemoryStorage
from django.utils._os import safe_join


class RemoteStorage(InMemoryStorage):
    """Files in this process's memory; ``path()`` raises as S3Storage's does."""

    def path(self, name: str) -> str:
        raise NotImplementedError("This backend doesn't support absolute paths.")

    def _relative_path(self, name: str) -> str:
        # InMemoryStorage finds its nodes through path(); the same, without offering it.
        return os.path.relpath(safe_join(self.location, name), self.location)

    def names(self, directory: str = "") -> list[str]:
        """Every file's name under ``directory``, recursively."""
        dirs, files = self.listdir(directory)
        out = [f"{directory}/{f}".lstrip("/") for f in files]
        for d in dirs:
            out += self.names(f"{directory}/{d}".lstrip("/"))
        return sorted(out)
