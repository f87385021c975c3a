# Sourced by the GPU scripts: the wheels the GPU image lacks (in .whl/, fetched beforehand) go into
# .gpu-site/ on PYTHONPATH; SKIP_WHEELS=1 (or no .whl/) leaves the environment as it is.
if [ "${SKIP_WHEELS:-0}" != 1 ] && compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .gpu-site .whl/*.whl
  export PYTHONPATH=$PWD/.gpu-site:$PWD
else
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
fi
