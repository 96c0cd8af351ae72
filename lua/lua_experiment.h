/* Support of the experiment module (lua/cce/experiment.lua) in C: lua_experiment.c and
 * lua_figure.c. Internal to the Lua binding. */
#ifndef CCE_LUA_EXPERIMENT_H
#define CCE_LUA_EXPERIMENT_H

#include <lua.h>

/* Registers the internal functions of lua_experiment.c in the cce table on the stack top
 * (cce._model_identity, cce._data_identity, cce._params, cce._strategy_seed,
 * cce._expand_layers, cce._now, cce._experiment) and the "cce.experiment" class, then calls
 * cce_lua_open_figure. Called by cce_lua_open_results; leaves the stack as it found it. */
void cce_lua_open_experiment(lua_State *L);

/* Registers cce._figure (lua_figure.c) in the cce table on the stack top. */
void cce_lua_open_figure(lua_State *L);

#endif
