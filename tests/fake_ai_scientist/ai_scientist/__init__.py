"""A small stand-in for SakanaAI/AI-Scientist-v2, written from scratch for otel_ai's tests.

Same module paths, class and method names, signatures and call pattern as the real
package (a process pool under fork or spawn, nodes born in the workers, a Journal whose
get_best_node asks an LLM, an OpenAI client per call), none of its code. The LLM is
``llm_stub`` beside this package, on 127.0.0.1.
"""
