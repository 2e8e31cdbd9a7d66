"""The public conformance kit: check any ssm / converter / attention / conv / norm backend against the references.

For plugin authors::

    from zoo.testing import check_ssm_backend
    check_ssm_backend(MyBackend(), device="cuda", dtype=torch.bfloat16)

or, in a test module, let every registered backend be tested::

    @pytest.mark.parametrize("case", conformance_cases("all"))
    def test_conformance(case):
        run_conformance_case(case)
"""

from zoo.testing.cases import (
    ATTENTION_CASES,
    SMALL_ATTENTION_CASES,
    SMALL_SSM_CASES,
    SSM_CASES,
    AttentionCase,
    SSMCase,
    attention_inputs,
    ssm_inputs,
)
from zoo.testing.checks import (
    TOLERANCES,
    CaseResult,
    check_attention_backend,
    check_converter_backend,
    check_ssm_backend,
    nan_filled_empty,
    rel_err,
    tolerance,
)
from zoo.testing.conformance import (
    ConformanceCase,
    compile_cases,
    conformance_cases,
    run_compile_case,
    run_conformance_case,
)
from zoo.testing.conv import CONV_CASES, SMALL_CONV_CASES, ConvCase, check_conv_backend, conv_inputs
from zoo.testing.norm import NORM_CASES, SMALL_NORM_CASES, NormCase, check_norm_backend, norm_inputs

__all__ = [
    "ATTENTION_CASES",
    "CONV_CASES",
    "NORM_CASES",
    "SMALL_CONV_CASES",
    "SMALL_NORM_CASES",
    "SMALL_ATTENTION_CASES",
    "SMALL_SSM_CASES",
    "SSM_CASES",
    "TOLERANCES",
    "AttentionCase",
    "CaseResult",
    "ConformanceCase",
    "ConvCase",
    "NormCase",
    "SSMCase",
    "attention_inputs",
    "check_attention_backend",
    "check_conv_backend",
    "check_converter_backend",
    "check_norm_backend",
    "check_ssm_backend",
    "compile_cases",
    "conformance_cases",
    "conv_inputs",
    "norm_inputs",
    "nan_filled_empty",
    "rel_err",
    "run_compile_case",
    "run_conformance_case",
    "ssm_inputs",
    "tolerance",
]
