//! Progress reporting: phase announcements, terminal bars, JSON-lines events.
