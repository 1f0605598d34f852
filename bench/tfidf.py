"""A generated TF-IDF workload for the sparse benchmarks: a Zipf-distributed
vocabulary, documents drawn from topic distributions, TF-IDF weighting by
scikit-learn's ``TfidfTransformer`` (smooth idf, l2-normalised rows).

    from tfidf import tfidf_matrix
    X = tfidf_matrix()          # 20,000 x 100,000 CSR float64, about 4.2 M nonzeros

Each topic is the Zipf distribution (exponent 1) over its own random
permutation of the vocabulary; a token is drawn from the document's topic or,
with probability ``background``, from the Zipf distribution over the
vocabulary in its natural order (words every topic shares). Document lengths
are uniform in [50, 500] tokens. Deterministic for a seed.
"""
import numpy as np


def tfidf_matrix(n_docs=20_000, n_terms=100_000, n_topics=20, min_tokens=50, max_tokens=500,
                 background=0.5, seed=0, dtype=np.float64):
    """The TF-IDF matrix (CSR, ``dtype``) of generated documents."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.RandomState(seed)
    weights = 1.0 / np.arange(1, n_terms + 1)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    perms = np.stack([rng.permutation(n_terms) for _ in range(n_topics)]).astype(np.int32)
    lengths = rng.randint(min_tokens, max_tokens + 1, size=n_docs)
    topic = rng.randint(0, n_topics, size=n_docs)
    doc = np.repeat(np.arange(n_docs, dtype=np.int32), lengths)
    ranks = np.minimum(np.searchsorted(cdf, rng.random_sample(doc.size)), n_terms - 1)
    own = rng.random_sample(doc.size) >= background
    terms = np.where(own, perms[topic[doc], ranks], ranks)
    counts = sp.csr_matrix((np.ones(doc.size), (doc, terms)), shape=(n_docs, n_terms))
    counts.sum_duplicates()
    X = TfidfTransformer().fit_transform(counts).tocsr().astype(dtype)
    X.sort_indices()
    return X
