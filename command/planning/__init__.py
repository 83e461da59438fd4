"""Dispatch by deadline: travel times on the road network, deadlines, and sharing scarce units.

Pure: no Redis, no wall clock; every function takes the time it plans at. One module per job:

- `profiles`: what a resource type is for planning (speed where roads give none, set-up time) and
  the model's constants (10 km/h off the road network, straight line x 1.3 with no network);
- `roads`: the road network (`roads.geojson`): validation, the graph (networkx), nearest road
  vertex (scipy cKDTree), fastest routes (scipy csgraph), closed segments, "via" road names;
- `closures`: which incidents close roads (`road_closed` 100 m, `levee_breach` 500 m) and when;
- `deadlines`: an alert's deadline (projected time to the next level, or `respond_within`) and the
  weight of its level;
- `assignment`: units to alerts, minimising lateness weighted by level, then travel time
  (scipy `linear_sum_assignment`);
- `plan`: one plan over every open alert that asks for units: estimates, assignment, held units.

`command.engine.recommend` turns a plan into the recommendations the dashboard shows.
"""
