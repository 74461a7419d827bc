/* Internal: the sequence half of the data module, called from synth.c. */
#ifndef DDTRAIN_DATA_SEQUENCE_H
#define DDTRAIN_DATA_SEQUENCE_H

#include "ddtrain/data.h"

/* `data synth --seq-len T`: token sequences (see dd_synth_spec). */
int dd__data_synth_seq(const dd_synth_spec *s, dd_dataset **out);

#endif
