"""The server behind ``hushnet serve`` (extra ``hushnet[serve]``): ``app`` (create_app, guards),
``routes`` (the denoise and jobs routers), ``dependencies`` (token, store, job and file lookups),
``uploads`` (multipart into a job's folder), ``jobs`` (the store and its workers), ``renders``
(mixes, spectrograms, ZIPs), ``static`` (the page). The command itself is :mod:`hushnet.commands.serve`.
"""
