"""A person as the recognition processes know them (from the ``people`` topic): a plain value,
so the kudos rules and the points rules can use it without any I/O (``directory.py`` keeps
the copy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DirectoryPerson:
    id: str
    name: str
    email: str
    role: str
    department: str
    active: bool
    title: str | None = None
    manager_id: str | None = None
    hidden: bool = False  # "keep me off the leaderboards": scored, left out of everyone else's boards

    def as_record(self) -> dict:
        """The person as the requests service's API shows them (the gateway's ``Person``)."""
        return {"id": self.id, "email": self.email, "name": self.name, "role": self.role, "department": self.department,
                "title": self.title, "manager_id": self.manager_id, "active": self.active, "hidden": self.hidden}
