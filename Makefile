.PHONY: build debug test bench report annotate clean

build:            ## in-place release build
	python3 setup.py build_ext --inplace

debug:            ## in-place build with Cython bounds checking
	FASTKM_BOUNDSCHECK=1 python3 setup.py build_ext --inplace

annotate:         ## Cython annotated HTML next to each .pyx (look for yellow in hot loops)
	FASTKM_ANNOTATE=1 python3 setup.py build_ext --inplace

test:
	python3 -m pytest

bench:            ## fastkm vs scikit-learn, same run, same thread count
	python3 -m pytest bench --benchmark-only --benchmark-json=bench/results/latest.json
	python3 bench/report.py bench/results/latest.json

clean:
	rm -rf build fastkm/*.c fastkm/*.so fastkm/*.html *.egg-info
