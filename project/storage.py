"""The static files storage of DEBUG=0: whitenoise's compressed manifest storage, with the
``import`` statements of ES modules rewritten to the hashed names too.

The browser client is ES modules with no build step (chat/static/chat/). Django hashes
every file's name, but only rewrites the imports inside a module when asked
(``support_js_module_import_aggregation``); without it the page loaded the hashed
``ui/app.js`` (cached for a year) which imported the unhashed ``./dom.js`` (cached 60 s),
so for a minute after a deploy a browser could run old and new modules together.
"""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class ParleyStaticFilesStorage(CompressedManifestStaticFilesStorage):
    support_js_module_import_aggregation = True
    # Each pass settles one level of imports; the client's deepest chain is five modules
    # (ui/app.js -> ... -> client/transports.js), past Django's default of five passes.
    max_post_process_passes = 12
