"""The mail and web templates, shipped inside the wheel as the package `digest.templates`.

This folder stays the one place where the templates live in the repository; pyproject's
package-dir maps it to `digest.templates`, so an editable install, a wheel and an
sdist-built wheel all find it with importlib.resources (digest.render). Nothing to import.
"""
