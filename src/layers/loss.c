/* Losses: softmax cross-entropy on integer labels, mean squared error. */
#include <math.h>

#include "ddtrain/layers.h"

void dd_cross_entropy(float *dlogits, dd_loss_sums *s, const float *logits, const int32_t *labels, int64_t R, int K) {
  double loss = 0.0, count = 0.0, correct = 0.0;
  for (int64_t r = 0; r < R; r++) {
    const float *z = logits + r * K;
    float *dz = dlogits ? dlogits + r * K : NULL;
    int32_t y = labels[r];
    if (y < 0) { /* masked (padding) */
      if (dz)
        for (int k = 0; k < K; k++)
          dz[k] = 0.0f;
      continue;
    }
    float zmax = z[0];
    int arg = 0;
    for (int k = 1; k < K; k++)
      if (z[k] > zmax) {
        zmax = z[k];
        arg = k;
      }
    double sum = 0.0;
    for (int k = 0; k < K; k++)
      sum += exp((double)(z[k] - zmax));
    double logsum = log(sum) + (double)zmax;
    loss += logsum - (double)z[y];
    count += 1.0;
    correct += (arg == y);
    if (dz) {
      for (int k = 0; k < K; k++)
        dz[k] = (float)exp((double)z[k] - logsum);
      dz[y] -= 1.0f;
    }
  }
  s->loss += loss;
  s->count += count;
  s->correct += correct;
}

void dd_mse(float *dpred, dd_loss_sums *s, const float *pred, const float *targets, int64_t R, int K) {
  double loss = 0.0;
  int64_t n = R * K;
  for (int64_t i = 0; i < n; i++) {
    float d = pred[i] - targets[i];
    loss += (double)d * (double)d;
    if (dpred)
      dpred[i] = 2.0f * d;
  }
  s->loss += loss;
  s->count += (double)n;
}
