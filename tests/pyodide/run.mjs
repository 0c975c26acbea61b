// Runs fntrace's test suite on CPython 3.14 compiled to WebAssembly (Pyodide) under Node.js.
//
// Why Node: Pyodide is the one 3.14 interpreter this project can install from a registry
// (npm), and it is also the platform without threads, fork, subprocesses, sockets or signals,
// so this leg checks that fntrace's tracers need none of them.
//
// Usage: node run.mjs WHEEL_DIR [pytest args...]
// The repository is mounted read-write at /repo (NODEFS), so no copy goes stale; pytest and
// its dependencies are unpacked from the pure-Python wheels in WHEEL_DIR (downloaded by pip on
// the host: Pyodide's own package index is on a CDN this machine cannot reach).
import { loadPyodide } from "pyodide";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..");
const [wheelDir, ...pytestArgs] = process.argv.slice(2);
if (!wheelDir) {
  console.error("usage: node run.mjs WHEEL_DIR [pytest args...]");
  process.exit(2);
}

const pyodide = await loadPyodide();
// Raw writes, so pytest's progress dots stay on one line.
pyodide.setStdout({ write: (buf) => { process.stdout.write(buf); return buf.length; } });
pyodide.setStderr({ write: (buf) => { process.stderr.write(buf); return buf.length; } });
const FS = pyodide.FS;
FS.mkdirTree("/repo");
FS.mount(FS.filesystems.NODEFS, { root: repo }, "/repo");
FS.mkdirTree("/wheels");
FS.mount(FS.filesystems.NODEFS, { root: path.resolve(wheelDir) }, "/wheels");

pyodide.globals.set("pytest_args", pyodide.toPy(pytestArgs));
const code = await pyodide.runPythonAsync(`
import runpy, sys
sys.argv = ["/repo/tests/pyodide/entry.py", "/wheels", *pytest_args]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
    rc = 0
except SystemExit as e:
    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
rc
`);
process.exit(code);
