"""annotation stage (issue 7): label schemas, projects, tasks, annotations, adjudications.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

import chainkeeper.core.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _when(name: str) -> sa.Column:
    return sa.Column(name, chainkeeper.core.db.UTCDateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table('label_schemas',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('guidelines', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    _when('created_at'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label_schemas')),
    sa.UniqueConstraint('name', 'version', name=op.f('uq_label_schemas_name_version')),
    )
    op.create_index(op.f('ix_label_schemas_name'), 'label_schemas', ['name'], unique=False)
    op.create_table('annotation_projects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('dataset_version_id', sa.Integer(), nullable=False),
    sa.Column('schema_id', sa.Integer(), nullable=False),
    sa.Column('row_filter', sa.JSON(), nullable=False),
    sa.Column('overlap_k', sa.Integer(), nullable=False),
    sa.Column('overlap_fraction', sa.Double(), nullable=False),
    sa.Column('queue_order', sa.String(length=16), nullable=False),
    sa.Column('order_key', sa.String(length=64), nullable=True),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('prelabel_model_version_id', sa.Integer(), nullable=True),
    sa.Column('exported_version_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    _when('created_at'),
    sa.ForeignKeyConstraint(['dataset_version_id'], ['dataset_versions.id'],
                            name=op.f('fk_annotation_projects_dataset_version_id_dataset_versions')),
    sa.ForeignKeyConstraint(['schema_id'], ['label_schemas.id'],
                            name=op.f('fk_annotation_projects_schema_id_label_schemas')),
    sa.ForeignKeyConstraint(['prelabel_model_version_id'], ['model_versions.id'],
                            name=op.f('fk_annotation_projects_prelabel_model_version_id_model_versions')),
    sa.ForeignKeyConstraint(['exported_version_id'], ['dataset_versions.id'],
                            name=op.f('fk_annotation_projects_exported_version_id_dataset_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotation_projects')),
    sa.UniqueConstraint('name', name=op.f('uq_annotation_projects_name')),
    )
    op.create_index(op.f('ix_annotation_projects_dataset_version_id'), 'annotation_projects',
                    ['dataset_version_id'], unique=False)
    op.create_table('annotation_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('row_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('position', sa.Double(), nullable=False),
    sa.Column('overlap', sa.Boolean(), nullable=False),
    sa.Column('prelabel', sa.JSON(), nullable=True),
    sa.Column('al_score', sa.Double(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('final', sa.JSON(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['annotation_projects.id'], ondelete='CASCADE',
                            name=op.f('fk_annotation_items_project_id_annotation_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotation_items')),
    sa.UniqueConstraint('project_id', 'row_id', name=op.f('uq_annotation_items_project_id_row_id')),
    )
    op.create_index(op.f('ix_annotation_items_project_id'), 'annotation_items', ['project_id'], unique=False)
    op.create_index(op.f('ix_annotation_items_state'), 'annotation_items', ['state'], unique=False)
    op.create_table('annotation_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('annotator', sa.String(length=128), nullable=False),
    sa.Column('batch', sa.Integer(), nullable=False),
    sa.Column('assigned_by', sa.String(length=128), nullable=False),
    _when('assigned_at'),
    sa.ForeignKeyConstraint(['project_id'], ['annotation_projects.id'], ondelete='CASCADE',
                            name=op.f('fk_annotation_assignments_project_id_annotation_projects')),
    sa.ForeignKeyConstraint(['item_id'], ['annotation_items.id'], ondelete='CASCADE',
                            name=op.f('fk_annotation_assignments_item_id_annotation_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotation_assignments')),
    sa.UniqueConstraint('item_id', 'annotator', name=op.f('uq_annotation_assignments_item_id_annotator')),
    )
    op.create_index(op.f('ix_annotation_assignments_project_id'), 'annotation_assignments', ['project_id'],
                    unique=False)
    op.create_index(op.f('ix_annotation_assignments_item_id'), 'annotation_assignments', ['item_id'], unique=False)
    op.create_index(op.f('ix_annotation_assignments_annotator'), 'annotation_assignments', ['annotator'],
                    unique=False)
    op.create_table('annotations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('annotator', sa.String(length=128), nullable=False),
    sa.Column('schema_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Double(), nullable=True),
    _when('created_at'),
    _when('updated_at'),
    sa.ForeignKeyConstraint(['project_id'], ['annotation_projects.id'], ondelete='CASCADE',
                            name=op.f('fk_annotations_project_id_annotation_projects')),
    sa.ForeignKeyConstraint(['item_id'], ['annotation_items.id'], ondelete='CASCADE',
                            name=op.f('fk_annotations_item_id_annotation_items')),
    sa.ForeignKeyConstraint(['schema_id'], ['label_schemas.id'], name=op.f('fk_annotations_schema_id_label_schemas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotations')),
    sa.UniqueConstraint('item_id', 'annotator', name=op.f('uq_annotations_item_id_annotator')),
    )
    op.create_index(op.f('ix_annotations_project_id'), 'annotations', ['project_id'], unique=False)
    op.create_index(op.f('ix_annotations_item_id'), 'annotations', ['item_id'], unique=False)
    op.create_index(op.f('ix_annotations_annotator'), 'annotations', ['annotator'], unique=False)
    op.create_table('adjudications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('decided_by', sa.String(length=128), nullable=False),
    _when('decided_at'),
    sa.ForeignKeyConstraint(['project_id'], ['annotation_projects.id'], ondelete='CASCADE',
                            name=op.f('fk_adjudications_project_id_annotation_projects')),
    sa.ForeignKeyConstraint(['item_id'], ['annotation_items.id'], ondelete='CASCADE',
                            name=op.f('fk_adjudications_item_id_annotation_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_adjudications')),
    )
    op.create_index(op.f('ix_adjudications_project_id'), 'adjudications', ['project_id'], unique=False)
    op.create_index(op.f('ix_adjudications_item_id'), 'adjudications', ['item_id'], unique=False)


def downgrade() -> None:
    for table, columns in (('adjudications', ('project_id', 'item_id')),
                           ('annotations', ('project_id', 'item_id', 'annotator')),
                           ('annotation_assignments', ('project_id', 'item_id', 'annotator')),
                           ('annotation_items', ('project_id', 'state')),
                           ('annotation_projects', ('dataset_version_id',)),
                           ('label_schemas', ('name',))):
        for column in columns:
            op.drop_index(op.f(f'ix_{table}_{column}'), table_name=table)
        op.drop_table(table)
