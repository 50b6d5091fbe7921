"""The in-memory view of every topic, and resolving the names clients use for them."""

from __future__ import annotations

from django_ensign.server.storage import TopicRecord
from django_ensign.wire import ids, topichash, topicnames

#: TopicState values (topic_pb2.TopicState).
READY = 1
READONLY = 2
DELETING = 3


class TopicRegistry:
    """Topics by id and by (project, name); the event loop is its only mutator."""

    def __init__(self, topics: list[TopicRecord]) -> None:
        self.by_id: dict[bytes, TopicRecord] = {}
        self._by_name: dict[tuple[bytes, str], TopicRecord] = {}
        for topic in topics:
            self.add(topic)

    def add(self, topic: TopicRecord) -> None:
        """Register a topic."""
        self.by_id[topic.id] = topic
        self._by_name[(topic.project_id, topic.name)] = topic

    def remove(self, topic_id: bytes) -> None:
        """Forget a destroyed topic, freeing its name."""
        topic = self.by_id.pop(topic_id, None)
        if topic is not None:
            self._by_name.pop((topic.project_id, topic.name), None)

    def by_name(self, project_id: bytes, name: str) -> TopicRecord | None:
        """The project's topic with this exact name."""
        return self._by_name.get((project_id, name))

    def of_project(self, project_id: bytes) -> list[TopicRecord]:
        """The project's topics that are not being destroyed, in creation order."""
        topics = [
            t for t in self.by_id.values() if t.project_id == project_id and t.state != DELETING
        ]
        topics.sort(key=lambda t: t.id)
        return topics

    def resolve(self, project_id: bytes, refs: list[str]) -> list[TopicRecord]:
        """The project's topics matching any of ``refs`` (names, ULID strings or name hashes);
        all of them when ``refs`` is empty. Unmatched refs are dropped."""
        topics = self.of_project(project_id)
        if not refs:
            return topics
        wanted: set[bytes] = set()
        for ref in refs:
            for topic in topics:
                if topic.name == ref:
                    wanted.add(topic.id)
            if ids.is_ulid_str(ref):
                wanted.add(ids.ulid_from_str(ref))
            digest = topichash.decode_hash_str(ref)
            if digest is not None:
                for topic in topics:
                    if topichash.topic_hash(topic.name) == digest:
                        wanted.add(topic.id)
        return [t for t in topics if t.id in wanted]


def name_error(name: str) -> str | None:
    """Why ``name`` is not a valid topic name, or None if it is."""
    if not name:
        return "missing name field"
    if len(name.encode("utf-8")) > topicnames.MAX_BYTES:
        return "topic name is too long"
    if not topicnames.NAME.fullmatch(name):
        return "topic name is invalid"
    return None
