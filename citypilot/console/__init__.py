"""The browser console: sources in this folder, the build in ``dist/`` (served at ``/``)."""
