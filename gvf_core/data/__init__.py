"""The 4D data engine: procedural shapes and motions, imported animations, training shards.

- :mod:`gvf_core.data.shapes`: random procedural assets (primitives, creatures, plants,
  machines) with skeletons and skinning weights, and :func:`asset_from_mesh` for user meshes;
- :mod:`gvf_core.data.skeleton`: :class:`Skeleton`, forward kinematics, linear blend skinning;
- :mod:`gvf_core.data.motions`: the motion families and :func:`random_motion`.
"""
