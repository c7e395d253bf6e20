"""Run one e2e module under unittest, as ctest does: exit 0 when every test
passed, 1 on a failure, 77 (ctest's SKIP_RETURN_CODE) when nothing failed but
a test was skipped, so ctest shows the module as skipped, never as passed.
Under CI (any non-empty value) a test whose real component is missing fails
instead of skipping (gwtest.CI)."""
import sys
import unittest

SKIPPED = 77


def main():
    name = sys.argv[1]
    suite = unittest.defaultTestLoader.loadTestsFromName(name)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful():
        return 1
    if result.skipped:
        for test, why in result.skipped:
            print(f"SKIPPED {test.id()}: {why}", file=sys.stderr)
        return SKIPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
