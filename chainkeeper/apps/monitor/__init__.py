"""The financial sentiment monitor (issue 17): a stream of headlines and posts in,
sentiment and organisations per item, trends and surge alerts with their evidence.

Its foundation, landed first (the application object, its tables, routes, pages and
quickstart come next):

- ``stream``: Redis Streams ingestion with a consumer group — items acknowledged only after
  they were handled, pending ones re-read or taken over after a crash, malformed ones
  dead-lettered with the reason, reconnecting when Redis goes away;
- ``surge``: surge detection of negative sentiment per entity, with a false-alarm budget
  shared across entities;
- ``entities``: organisation names from the tagger, normalised to one key per company.
"""
